"""The grading engine end to end on a toy lab that exists only in this test: a lab is data (rubric folder + source
notebook), and grading it touches no engine file. Student code runs in the real sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from toylab import LAB, SOLUTION_SOFTMAX, notebook_bytes

from autograder import cli
from autograder.batch import grade_course
from autograder.grading import grade_submission, load_lab
from autograder.intake.submission import Submission
from autograder.sandbox import check_sandbox_available


def grade(toy, tmp_path, name="s", **kw):
    ctx = load_lab(None, LAB)
    data = notebook_bytes(tmp_path / f"{name}.ipynb", **kw) if kw or name else b""
    return grade_submission(Submission(name, LAB, data), ctx, seed="fixed-seed")


@pytest.fixture(scope="module", autouse=True)
def needs_bwrap():
    check_sandbox_available()


def by_id(record):
    return {c.id: c for c in record.checks}


def test_correct_submission_gets_full_marks(toy, tmp_path):
    record, executed = grade(toy, tmp_path)
    assert record.status == "graded" and record.sandboxed
    assert record.score == record.max_score == 4, record
    assert executed and b"softmax" in executed
    assert not record.flags


def test_wrong_axis_is_diagnosed_by_name_and_costs_only_its_checks(toy, tmp_path):
    wrong = SOLUTION_SOFTMAX.replace("x.max(-1, keepdim=True)", "x.max(0, keepdim=True)").replace(
        "e.sum(-1, keepdim=True)", "e.sum(0, keepdim=True)")
    record, _ = grade(toy, tmp_path, softmax=wrong)
    checks = by_id(record)
    assert checks["softmax_rows"].status == "failed"
    assert "softmax over the wrong axis" in checks["softmax_rows"].diagnosis
    assert "largest error" in checks["softmax_rows"].message
    assert checks["clip_norm_value"].status == "passed"
    assert record.score == 1


def test_unknown_mistake_reports_largest_error_and_where(toy, tmp_path):
    wrong = SOLUTION_SOFTMAX.replace("return e / e.sum(-1, keepdim=True)", "return e / (e.sum(-1, keepdim=True) + 1)")
    record, _ = grade(toy, tmp_path, softmax=wrong)
    d = by_id(record)["softmax_rows"].diagnosis
    assert d.startswith("no known misconception matches") and "at index" in d


def test_patching_comparison_helpers_in_the_kernel_earns_nothing(toy, tmp_path):
    cheat = """
def softmax(x):
    import numpy.testing, torch.testing
    numpy.testing.assert_allclose = lambda *a, **k: None
    torch.testing.assert_close = lambda *a, **k: None
    torch.allclose = lambda *a, **k: True
    return torch.zeros_like(x)
"""
    record, _ = grade(toy, tmp_path, softmax=cheat)
    assert by_id(record)["softmax_rows"].status == "failed"
    assert by_id(record)["softmax_shape"].status == "failed"
    assert record.score == 1


def test_edited_locked_cell_is_restored_and_flagged(toy, tmp_path):
    record, _ = grade(toy, tmp_path, setup="import torch\nEPS = 1e-12\ntorch.softmax = None")
    assert any(f.kind == "tampered" and "setup" in f.message for f in record.flags)
    assert record.score == 4  # the repaired notebook ran as the course wrote it


def test_raising_function_is_an_error_with_its_message(toy, tmp_path):
    record, _ = grade(toy, tmp_path, clip="def clip_norm(a, b, max_norm):\n    raise ValueError('not yet')")
    c = by_id(record)["clip_norm_value"]
    assert c.status == "error" and "ValueError" in c.message and "not yet" in c.message
    assert record.score == 3


def test_returning_an_unsendable_object_fails_cleanly(toy, tmp_path):
    record, _ = grade(toy, tmp_path, clip="def clip_norm(a, b, max_norm):\n    return object()")
    c = by_id(record)["clip_norm_value"]
    assert c.status == "error" and "cannot leave the sandbox" in c.message


def test_malformed_notebook_is_invalid_with_one_line_reason(toy, tmp_path):
    ctx = load_lab(None, LAB)
    record, executed = grade_submission(Submission("bad", LAB, b"{not json"), ctx, seed="s")
    assert record.status == "invalid" and executed is None
    assert "not a valid Jupyter notebook" in record.reason and "\n" not in record.reason
    assert record.score == 0 and all(c.status == "error" for c in record.checks)


def test_same_seed_same_inputs_other_seed_other_inputs(toy, tmp_path):
    # A check's inputs come from the stored seed: a regrade reproduces them, another submission's differ.
    ctx = load_lab(None, LAB)
    data = notebook_bytes(tmp_path / "n.ipynb",
                          clip="def clip_norm(a, b, max_norm):\n    return 1.0",
                          softmax="def softmax(x):\n    return torch.softmax(x, -1) + (x[0, 0] > 0) * 1.0")
    outcomes = {seed: grade_submission(Submission("s", LAB, data), ctx, seed=seed)[0].score
                for seed in ("a", "b", "c", "d", "e", "f")}
    again = grade_submission(Submission("s", LAB, data), ctx, seed="a")[0].score
    assert again == outcomes["a"]
    assert len(set(outcomes.values())) > 1  # the sign of x[0, 0] depends on the seed


def test_grade_command_and_json_export(toy, tmp_path, capsys):
    course = tmp_path / "course"
    for student, soft in (("alice", SOLUTION_SOFTMAX), ("bob", "def softmax(x):\n    return x")):
        sub = course / "submitted" / student / LAB
        sub.mkdir(parents=True)
        notebook_bytes(sub / f"{LAB}.ipynb", softmax=soft)
    (course / "nbgrader_config.py").write_text("c = get_config()\n")
    assert cli.main(["grade", str(course), LAB]) == 0
    out = tmp_path / "grades.json"
    assert cli.main(["export", str(course), "--format", "json", "-o", str(out)]) == 0
    rows = {r["student"]: r for r in json.loads(out.read_text())}
    assert rows["alice"]["score"] == 4 and rows["bob"]["score"] == 1
    assert set(rows["bob"]) == {"student", "assignment", "score", "max_score", "status", "checks", "flags",
                                "written_score", "written_max_score", "total_score", "total_max_score", "final",
                                "total_note", "similar"}
    assert {"id", "function", "points", "max_points", "status", "message", "diagnosis"} == set(
        rows["bob"]["checks"][0])
    # the same content under the same rubric is not graded again: same attempt, same timings
    from autograder.db.store import CourseStore

    before = {r.student: r.timings for r in CourseStore(course).records(LAB)}
    records = grade_course(course, LAB)
    assert {r.student: r.timings for r in records} == before
    assert len(CourseStore(course).history(LAB, "alice")) == 1


def test_mistyped_lab_is_one_line(toy, tmp_path, capsys):
    (tmp_path / "nbgrader_config.py").write_text("")
    assert cli.main(["grade", str(tmp_path), "lab-2.4.2-mamba-architectur"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sparkgrade grade: unknown lab") and "\n" not in err


def test_toy_lab_touches_no_engine_file():
    engine = Path(__file__).resolve().parents[1] / "autograder"
    assert not any("lab-9.9.9" in p.read_text() for p in engine.rglob("*.py"))


def test_cheating_code_is_flagged_for_the_instructor(toy, tmp_path):
    cheat = """
def softmax(x):
    import inspect, socket, numpy.testing
    numpy.testing.assert_allclose = lambda *a, **k: None
    frames = inspect.stack()
    return torch.softmax(x, -1)
"""
    record, _ = grade(toy, tmp_path, softmax=cheat)
    found = " | ".join(f.message for f in record.flags if f.kind == "suspicious-code")
    assert "numpy.testing.assert_allclose" in found and "socket" in found and "inspect.stack" in found
    assert record.score == 4  # a flag is for a person to read; the points still come from the checks


def test_searching_the_stack_and_heap_finds_no_expected_values(toy, tmp_path):
    # The reference answer is computed outside the sandbox: there is nothing to find in here.
    cheat = """
def softmax(x):
    import gc, inspect
    for frame in inspect.stack():
        for v in list(frame.frame.f_locals.values()):
            if isinstance(v, torch.Tensor) and v.shape == x.shape and v is not x:
                return v
    for obj in gc.get_objects():
        if isinstance(obj, torch.Tensor) and obj.shape == x.shape and obj is not x:
            return obj
    return x
"""
    record, _ = grade(toy, tmp_path, softmax=cheat)
    assert by_id(record)["softmax_rows"].status == "failed" and by_id(record)["softmax_shape"].status == "failed"
    assert record.score == 1


def test_csv_and_canvas_exports(toy, tmp_path):
    import csv
    import io

    from autograder.course.export import to_canvas, to_csv

    record, _ = grade(toy, tmp_path, softmax="def softmax(x):\n    return x")
    rows = list(csv.DictReader(io.StringIO(to_csv([record]))))
    assert {r["check"] for r in rows} == {"softmax_rows", "softmax_shape", "clip_norm_value"}
    canvas = list(csv.reader(io.StringIO(to_canvas([record]))))
    assert canvas[0][:4] == ["Student", "ID", "SIS User ID", "Section"] and canvas[0][4] == LAB
    assert canvas[1][4] == "4.0" and canvas[2][0] == "s" and canvas[2][4] == "1.0"


def test_symlinks_planted_in_a_submission_folder_are_not_followed(tmp_path):
    from autograder.intake.submission import read_submission_folder

    secret = tmp_path / "secret"
    secret.write_text("course secret")
    folder = tmp_path / "submitted" / "mallory" / LAB
    folder.mkdir(parents=True)
    (folder / "benchmarks.json").symlink_to(secret)
    (folder / f"{LAB}.ipynb").symlink_to(secret)
    sub = read_submission_folder("mallory", LAB, folder / f"{LAB}.ipynb")
    assert "benchmarks.json" not in sub.files and sub.notebook == b""
    (folder / "benchmarks.json").unlink()
    (folder / "benchmarks.json").write_text("[]")
    assert read_submission_folder("mallory", LAB, folder / f"{LAB}.ipynb").files["benchmarks.json"] == b"[]"


def test_definitions_run_falls_back_to_the_whole_notebook_when_a_skipped_cell_defines_a_needed_name(
        tmp_path, monkeypatch):
    # execute: definitions skips the locked "experiment" cell. A softmax whose default argument names SCALE (set
    # only there) raises NameError in that run: the grader runs the whole notebook instead of losing the points.
    from toylab import SETUP, SOLUTION_CLIP, VISIBLE, make_toy_lab

    from assignments import nbbuild

    root = make_toy_lab(tmp_path / "lab")
    rubric = root / "rubrics" / LAB / "rubric.yaml"
    rubric.write_text(rubric.read_text() + "execute: definitions\nsetup_cells: [setup]\n")
    monkeypatch.setenv("SPARKGRADE_RUBRICS", str(root / "rubrics"))
    monkeypatch.setenv("SPARKGRADE_ASSIGNMENTS", str(root / "assignments"))

    def notebook(softmax_default: str) -> bytes:
        softmax = SOLUTION_SOFTMAX.replace("def softmax(x):", f"def softmax(x, scale={softmax_default}):")
        cells = [nbbuild.md("# Toy lab"), nbbuild.locked("setup", SETUP),
                 nbbuild.locked("experiment", "SCALE = 1.0\nprint('experiment ran')"),
                 nbbuild.solution("softmax", softmax), nbbuild.visible_tests("test_softmax", VISIBLE, points=3),
                 nbbuild.solution("clip_norm", SOLUTION_CLIP)]
        path = tmp_path / f"{softmax_default}.ipynb"
        nbbuild.write(path, cells, title="toy")
        return path.read_bytes()

    nbbuild.write(root / "assignments" / "source" / LAB / f"{LAB}.ipynb",
                  [nbbuild.md("# Toy lab"), nbbuild.locked("setup", SETUP),
                   nbbuild.locked("experiment", "SCALE = 1.0\nprint('experiment ran')"),
                   nbbuild.solution("softmax", SOLUTION_SOFTMAX),
                   nbbuild.visible_tests("test_softmax", VISIBLE, points=3),
                   nbbuild.solution("clip_norm", SOLUTION_CLIP)], title="toy")
    ctx = load_lab(None, LAB)
    for default, whole_run in (("1.0", False), ("SCALE", True)):
        record, executed = grade_submission(Submission(default, LAB, notebook(default)), ctx, seed="s")
        assert record.score == record.max_score == 4, (default, record)
        printed = [o.get("text", "") for c in nbformat.reads(executed.decode(), as_version=4).cells
                   if c.cell_type == "code" for o in c.outputs]
        assert ("experiment ran\n" in printed) == whole_run, (default, printed)
        assert ("definitions_run_s" in record.timings) == whole_run, record.timings  # the rerun is on the record
