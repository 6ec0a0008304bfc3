"""Hidden checks of the submitted benchmarks.json (untrusted bytes): the configurations the lab asks for are
recorded, and each group of physical bounds (autograder.plausibility) holds. One check per group of rules, so an
impossible number costs that group's points only. Suspicious verdicts cost nothing here. The file is judged once per
submission (checks.trusted.judged_benchmarks); every check reads those verdicts and grading stores them."""

from __future__ import annotations

from autograder.checks.api import CheckFailed
from autograder.checks.trusted import judge_benchmarks
from autograder.plausibility import InferenceRecord

REQUIRED_ARCHITECTURES = ("transformer", "mamba")
MIN_CONTEXTS = 2
RULES = {
    "benchmarks_decode_speed": {"decode_bound"},
    "benchmarks_time_to_first_token": {"ttft_bound"},
    "benchmarks_memory": {"memory_floor", "memory_ceiling"},
}


def judge(submission, rubric, check):
    return judge_benchmarks(submission, rubric, check, RULES)


def test_benchmarks_recorded(submission, rubric):
    records = judge(submission, rubric, "benchmarks_recorded")
    inference = [r for r in records if isinstance(r, InferenceRecord)]
    for arch in REQUIRED_ARCHITECTURES:
        contexts = {r.context_len for r in inference if r.architecture == arch}
        if len(contexts) < MIN_CONTEXTS:
            raise CheckFailed(f"benchmarks.json should hold {arch} records at {MIN_CONTEXTS} or more context "
                              f"lengths; it has {len(contexts)} ({sorted(contexts)})")


def test_benchmarks_decode_speed(submission, rubric):
    judge(submission, rubric, "benchmarks_decode_speed")


def test_benchmarks_time_to_first_token(submission, rubric):
    judge(submission, rubric, "benchmarks_time_to_first_token")


def test_benchmarks_memory(submission, rubric):
    judge(submission, rubric, "benchmarks_memory")
