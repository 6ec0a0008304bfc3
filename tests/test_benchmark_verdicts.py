"""Benchmark verdicts are judged once per submission, used by every benchmark check, stored with the grade record,
shown on the feedback page and summarised on the class report; `sparkgrade check-benchmarks` agrees with grading."""

from __future__ import annotations

import importlib.util
import json

import pytest

from autograder.checks.api import CheckFailed
from autograder.checks.plugin import SubmissionContext
from autograder.checks.trusted import BENCHMARKS_MEMO, judge_benchmarks
from autograder.cli import main
from autograder.db.store import CourseStore
from autograder.feedback.page import write_feedback
from autograder.feedback.report import benchmark_summary
from autograder.grading import benchmark_flags, benchmark_judgement
from autograder.intake.submission import Submission
from autograder.plausibility import verdicts as verdicts_module
from autograder.records import CheckResult, GradeRecord
from autograder.rubric import load_rubric, rubric_dir

LAB = "lab-2.4.1-mamba-inference"
HW = "dgx-spark"
QWEN = {"model": "Qwen/Qwen3-8B", "architecture": "transformer", "params_total": 8_190_735_360,
        "params_active": 8_190_735_360, "dtype": "bfloat16", "batch_size": 1, "context_len": 512, "new_tokens": 256,
        "ttft_s": 0.2974, "decode_tok_s": 13.1, "peak_mem_bytes": 16_713_452_544, "device": "NVIDIA GB10",
        "kv_or_state_bytes": 75_497_472}
RECORDS = [QWEN, {**QWEN, "context_len": 4096, "ttft_s": 2.413, "decode_tok_s": 40.2},  # decode: impossible
           {**QWEN, "context_len": 2048, "ttft_s": 1.113, "decode_tok_s": 12.7, "peak_mem_bytes": 1_234_567}]
RAW = json.dumps(RECORDS).encode()


def _checks_module():
    path = rubric_dir(LAB) / "test_inference_benchmarks.py"
    spec = importlib.util.spec_from_file_location("lab241_benchmarks", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _grade_benchmarks(monkeypatch) -> tuple[SubmissionContext, list[str], int]:
    """Run the lab's benchmark checks as grading does; (context, failed checks, times the file was judged)."""
    calls = []
    real = verdicts_module.check_benchmarks
    monkeypatch.setattr(verdicts_module, "check_benchmarks", lambda *a, **k: calls.append(1) or real(*a, **k))
    context = SubmissionContext("ada", LAB, {"benchmarks.json": RAW}, HW)
    module, rubric = _checks_module(), load_rubric(LAB)
    failed = []
    for name in ("benchmarks_recorded", "benchmarks_decode_speed", "benchmarks_time_to_first_token",
                 "benchmarks_memory"):
        try:  # the rule checks are declared in rubric.yaml and served by one shared test (checks.benchmark_rules)
            if rubric.checks[name].rules:
                judge_benchmarks(context, rubric, name)
            else:
                getattr(module, f"test_{name}")(context, rubric)
        except CheckFailed:
            failed.append(name)
    return context, failed, len(calls)


def test_the_benchmark_checks_judge_the_file_once_and_share_the_verdicts(monkeypatch):
    context, failed, judged = _grade_benchmarks(monkeypatch)
    assert judged == 1
    assert {"benchmarks_decode_speed", "benchmarks_memory"} <= set(failed)  # and recorded: no Mamba records
    assert "benchmarks_time_to_first_token" not in failed
    sub = Submission("ada", LAB, b"{}", {"benchmarks.json": RAW})
    judgement = benchmark_judgement(sub, context)
    assert judgement is context.memo[BENCHMARKS_MEMO]  # grading keeps the checks' judgement, no second pass
    assert {v.rule for v in judgement.impossible} == {"decode_bound", "memory_floor"}
    flags = benchmark_flags(sub, judgement, HW)
    assert {f.kind for f in flags} <= {"suspicious-benchmark", "device-mismatch"}
    assert sum(f.kind == "suspicious-benchmark" for f in flags) == min(len(judgement.suspicious), 10)


def test_a_lab_without_benchmark_checks_still_gets_its_file_judged_once():
    context = SubmissionContext("ada", "lab-2.4.2-mamba-architecture", {"benchmarks.json": RAW}, HW)
    sub = Submission("ada", context.lab, b"{}", {"benchmarks.json": RAW})
    assert {v.rule for v in benchmark_judgement(sub, context).impossible} == {"decode_bound", "memory_floor"}
    assert benchmark_judgement(Submission("ada", context.lab, b"{}"), SubmissionContext("ada", context.lab)) is None


def test_check_benchmarks_and_grading_give_the_same_verdicts(monkeypatch, tmp_path, capsys):
    context, _, _ = _grade_benchmarks(monkeypatch)
    graded = context.memo[BENCHMARKS_MEMO].verdicts
    path = tmp_path / "benchmarks.json"
    path.write_bytes(RAW)
    main(["check-benchmarks", str(path), "--hardware", HW, "--json"])
    cli = json.loads(capsys.readouterr().out)["verdicts"]
    key = ("record", "rule", "severity", "bound", "value")
    assert [tuple(v[k] for k in key) for v in cli] == [tuple(getattr(v, k) for k in key) for v in graded]
    assert len(graded) >= 2


def _record(student: str, verdicts) -> GradeRecord:
    return GradeRecord(student=student, assignment=LAB, status="graded", score=1.0, max_score=2.0,
                       checks=(CheckResult("benchmarks_decode_speed", "benchmarks", 0.0, 1.0, "failed", "x"),),
                       flags=(), content_hash=student * 8, seed="0" * 32, rubric_version="1", sandboxed=True,
                       verdicts=verdicts)


@pytest.fixture
def graded_course(monkeypatch, tmp_path):
    context, _, _ = _grade_benchmarks(monkeypatch)
    verdicts = context.memo[BENCHMARKS_MEMO].verdicts
    sub_dir = tmp_path / "submitted" / "ada" / LAB
    sub_dir.mkdir(parents=True)
    (sub_dir / "benchmarks.json").write_bytes(RAW)
    with CourseStore(tmp_path) as store:
        store.save(_record("ada", verdicts), None)
        store.save(_record("bob", ()), None)  # judged, nothing found: nothing stored, reads back as not judged
        store.save(_record("cy", None), None)  # no benchmarks.json
        records = {r.student: r for r in store.records(LAB)}
    return tmp_path, verdicts, records


def test_the_grade_record_keeps_its_verdicts_in_the_store(graded_course):
    _, verdicts, records = graded_course
    assert records["ada"].verdicts == verdicts
    assert records["cy"].verdicts is None
    assert GradeRecord.from_dict(records["ada"].to_dict()).verdicts == verdicts


def test_the_feedback_page_shows_record_rule_bound_and_measured_value(graded_course, monkeypatch):
    course, verdicts, records = graded_course
    # the page shows what grading stored: judging the file again would be a bug
    monkeypatch.setattr("autograder.feedback.page.check_benchmarks", lambda *a: pytest.fail("judged again"))
    page = write_feedback(course, records["ada"], load_rubric(LAB), HW).read_text()
    decode = next(v for v in verdicts if v.rule == "decode_bound")
    assert "<code>decode_bound</code>" in page and f"{decode.bound:.4g}" in page and "40.2" in page
    assert "<code>memory_floor</code>" in page
    assert "new tokens per second of ONE sequence" in page and "max_memory_allocated" in page
    assert "Roofline of your benchmark numbers" in page


def test_the_class_report_summarises_the_verdicts(graded_course):
    _, _, records = graded_course
    summary = benchmark_summary(list(records.values()))
    assert summary["judged"] == 1
    by_rule = {(r["rule"], r["severity"]): r for r in summary["rules"]}
    assert by_rule[("decode_bound", "impossible")]["who"] == ["ada"]
    assert by_rule[("decode_bound", "impossible")]["median_ratio"] > 1.0
