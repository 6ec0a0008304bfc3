"""The benchmark checks a rubric declares as data: a check with ``function: benchmarks`` and ``rules: [...]`` in
rubric.yaml has no code in the lab's folder; this one test serves every such check of every lab.

The submitted benchmarks.json (untrusted bytes) is judged once per submission (checks.trusted.judged_benchmarks);
each declared check fails for the impossible verdicts of its own rules only, so an impossible number costs that
group's points. Suspicious verdicts cost nothing here (the grader flags them). The runner collects this file beside
the lab's own test files whenever the rubric declares such a check, and the check plugin runs the test once per
declared check id (``benchmark_check``), reporting it under that id.
"""

from __future__ import annotations

from typing import Any

from autograder.checks.trusted import judge_benchmarks


def test_benchmark_rules(submission: Any, rubric: Any, benchmark_check: str) -> None:
    judge_benchmarks(submission, rubric, benchmark_check)
