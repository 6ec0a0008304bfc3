"""Hidden checks of the submitted benchmarks.json (untrusted bytes): the configurations the lab asks for are
recorded, and each group of physical bounds (autograder.plausibility) holds. One check per group of rules, so an
impossible number costs that group's points only. Suspicious verdicts cost nothing here. The file is judged once per
submission (checks.trusted.judged_benchmarks); every check reads those verdicts and grading stores them."""

from __future__ import annotations

from autograder.checks.api import CheckFailed
from autograder.checks.trusted import judge_benchmarks
from autograder.plausibility import InferenceRecord

REQUIRED_ARCHITECTURES = ("transformer", "mamba")
MIN_ARCHITECTURES = 3
RULES = {
    "benchmarks_decode_speed": {"decode_bound"},
    "benchmarks_time_to_first_token": {"ttft_bound"},
    "benchmarks_memory": {"memory_floor", "memory_ceiling"},
    "benchmarks_perplexity": {"perplexity_range"},
}


def judge(submission, rubric, check):
    return judge_benchmarks(submission, rubric, check, RULES)


def test_benchmarks_recorded(submission, rubric):
    records = judge(submission, rubric, "benchmarks_recorded")
    inference = [r for r in records if isinstance(r, InferenceRecord)]
    architectures = {r.architecture for r in inference}
    missing = [a for a in REQUIRED_ARCHITECTURES if a not in architectures]
    if missing or len(architectures) < MIN_ARCHITECTURES:
        raise CheckFailed(f"benchmarks.json should compare {MIN_ARCHITECTURES} or more architectures including "
                          f"{' and '.join(REQUIRED_ARCHITECTURES)}; it has {sorted(architectures)}")
    unscored = sorted({r.model for r in inference if r.perplexity is None})
    if unscored:
        raise CheckFailed(f"records of {', '.join(unscored)} have no perplexity: record the perplexity you measured")


def test_benchmarks_decode_speed(submission, rubric):
    judge(submission, rubric, "benchmarks_decode_speed")


def test_benchmarks_time_to_first_token(submission, rubric):
    judge(submission, rubric, "benchmarks_time_to_first_token")


def test_benchmarks_memory(submission, rubric):
    judge(submission, rubric, "benchmarks_memory")


def test_benchmarks_perplexity(submission, rubric):
    judge(submission, rubric, "benchmarks_perplexity")
