"""Hidden check of the submitted benchmarks.json (untrusted bytes): the configurations the lab asks for are
recorded. The physical bounds are checks rubric.yaml declares by their rules (autograder/checks/benchmark_rules.py
serves them); this check answers for the impossible verdicts none of them owns. The file is judged once per
submission (checks.trusted.judged_benchmarks); every check reads those verdicts and grading stores them."""

from __future__ import annotations

from autograder.checks.api import CheckFailed
from autograder.checks.trusted import judge_benchmarks
from autograder.plausibility import InferenceRecord

REQUIRED_ARCHITECTURES = ("transformer", "mamba")
MIN_CONTEXTS = 2


def test_benchmarks_recorded(submission, rubric):
    records = judge_benchmarks(submission, rubric, "benchmarks_recorded")
    inference = [r for r in records if isinstance(r, InferenceRecord)]
    for arch in REQUIRED_ARCHITECTURES:
        contexts = {r.context_len for r in inference if r.architecture == arch}
        if len(contexts) < MIN_CONTEXTS:
            raise CheckFailed(f"benchmarks.json should hold {arch} records at {MIN_CONTEXTS} or more context "
                              f"lengths; it has {len(contexts)} ({sorted(contexts)})")
