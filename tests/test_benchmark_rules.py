"""Benchmark checks as data: a lab whose rubric.yaml declares checks by their plausibility rules gets them graded by
the one shared module (autograder/checks/benchmark_rules.py), with no check code in its own folder, and each check
costs points only for the impossible verdicts of its own rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autograder.checks.plugin import SubmissionContext
from autograder.checks.runner import run_checks
from autograder.rubric import load_rubric

HONEST = Path(__file__).parent / "data" / "benchmarks" / "spark_honest.json"
LAB = "lab-9.9.8-benchmarks-only"
RUBRIC = f"""
lab: {LAB}
version: "1"
hardware: dgx-spark
checks:
  decode_speed: {{function: benchmarks, points: 2, rules: [decode_bound]}}
  memory: {{function: benchmarks, points: 1, rules: [memory_floor, memory_ceiling]}}
  the_rest: {{function: benchmarks, points: 1}}
"""
REST = """
from autograder.checks.trusted import judge_benchmarks


def test_the_rest(submission, rubric):
    judge_benchmarks(submission, rubric, "the_rest")
"""


class NoStudent:
    def call(self, *a, **k):
        raise AssertionError("benchmark checks call no student function")


@pytest.fixture
def lab(tmp_path, monkeypatch):
    folder = tmp_path / LAB
    folder.mkdir()
    (folder / "rubric.yaml").write_text(RUBRIC)
    (folder / "test_rest.py").write_text(REST)
    monkeypatch.setenv("SPARKGRADE_RUBRICS", str(tmp_path))
    return load_rubric(LAB)


def grade(rubric, data: bytes | None):
    files = {} if data is None else {"benchmarks.json": data}
    results, errors = run_checks(rubric, NoStudent(), "seed", SubmissionContext("s", LAB, files, "dgx-spark"))
    assert not errors, errors
    return {r.id: r for r in results}


def test_declared_checks_pass_honest_numbers(lab):
    results = grade(lab, HONEST.read_bytes())
    assert {k: r.status for k, r in results.items()} == dict.fromkeys(("decode_speed", "memory", "the_rest"),
                                                                      "passed")
    assert sum(r.points for r in results.values()) == lab.max_score == 4


def test_each_declared_check_answers_for_its_own_rules_only(lab):
    records = json.loads(HONEST.read_text())
    records[0]["decode_tok_s"] *= 1e6  # faster than the memory bandwidth allows
    results = grade(lab, json.dumps(records).encode())
    assert results["decode_speed"].status == "failed" and results["decode_speed"].points == 0
    assert "decode" in results["decode_speed"].message
    assert results["memory"].status == "passed" and results["memory"].points == 1


def test_a_missing_file_fails_every_declared_check(lab):
    results = grade(lab, None)
    assert all(r.status == "failed" and "benchmarks.json" in r.message for r in results.values())


def test_rules_belong_to_benchmark_checks_only(tmp_path, monkeypatch):
    from autograder.errors import UserError

    folder = tmp_path / LAB
    folder.mkdir()
    (folder / "rubric.yaml").write_text(RUBRIC.replace("the_rest: {function: benchmarks,",
                                                       "the_rest: {function: softmax, rules: [decode_bound],"))
    monkeypatch.setenv("SPARKGRADE_RUBRICS", str(tmp_path))
    with pytest.raises(UserError, match="only checks of function 'benchmarks' judge rules"):
        load_rubric(LAB)
