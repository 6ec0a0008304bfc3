"""Hidden check of the submitted benchmarks.json (untrusted bytes): the configurations the lab asks for are
recorded. The physical bounds are checks rubric.yaml declares by their rules (autograder/checks/benchmark_rules.py
serves them); this check answers for the impossible verdicts none of them owns. The file is judged once per
submission (checks.trusted.judged_benchmarks); every check reads those verdicts and grading stores them."""

from __future__ import annotations

from autograder.checks.api import CheckFailed
from autograder.checks.trusted import judge_benchmarks
from autograder.plausibility import InferenceRecord

REQUIRED_ARCHITECTURES = ("transformer", "mamba")
MIN_ARCHITECTURES = 3


def test_benchmarks_recorded(submission, rubric):
    records = judge_benchmarks(submission, rubric, "benchmarks_recorded")
    inference = [r for r in records if isinstance(r, InferenceRecord)]
    architectures = {r.architecture for r in inference}
    missing = [a for a in REQUIRED_ARCHITECTURES if a not in architectures]
    if missing or len(architectures) < MIN_ARCHITECTURES:
        raise CheckFailed(f"benchmarks.json should compare {MIN_ARCHITECTURES} or more architectures including "
                          f"{' and '.join(REQUIRED_ARCHITECTURES)}; it has {sorted(architectures)}")
    unscored = sorted({r.model for r in inference if r.perplexity is None})
    if unscored:
        raise CheckFailed(f"records of {', '.join(unscored)} have no perplexity: record the perplexity you measured")
