"""The grading engine end to end on a toy lab that exists only in this test: a lab is data (rubric folder + source
notebook), and grading it touches no engine file. Student code runs in the real sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assignments import nbbuild
from autograder import cli
from autograder.grading import Submission, grade_course, grade_submission, load_lab
from autograder.sandbox import check_sandbox_available

LAB = "lab-9.9.9-toy"

RUBRIC = """
lab: lab-9.9.9-toy
version: "1"
limits: {notebook_s: 60, call_s: 20}
checks:
  softmax_rows: {function: softmax, points: 2}
  softmax_shape: {function: softmax, points: 1}
  clip_norm_value: {function: clip_norm, points: 1}
"""

CHECKS = '''
import torch
from autograder.checks.api import expect_close, expect_number


def test_softmax_rows(student, rng):
    x = torch.randn(4, 7, generator=rng) * 3
    expect_close(student.softmax(x), torch.softmax(x, -1), name="probs", rtol=1e-5, atol=1e-6, axes=("row", "col"))


def test_softmax_shape(student, rng):
    x = torch.randn(2, 3, 5, generator=rng)
    expect_close(student.softmax(x), torch.softmax(x, -1), name="probs", rtol=1e-5, atol=1e-6)


def test_clip_norm_value(student):
    expect_number(student.clip_norm(3.0, 4.0, 1.0), 1.0, name="clipped norm")
'''

MISCONCEPTIONS = '''
import torch
from autograder.checks.api import Misconception

MISCONCEPTIONS = [
    Misconception("softmax over the wrong axis", "softmax",
                  "the probabilities must sum to one over the last axis (the classes), not the first.",
                  lambda x: torch.softmax(x, 0)),
]
'''

SETUP = "import torch\nEPS = 1e-12"
SOLUTION_SOFTMAX = """
def softmax(x):
    ### BEGIN SOLUTION
    e = torch.exp(x - x.max(-1, keepdim=True).values)
    return e / e.sum(-1, keepdim=True)
    ### END SOLUTION
"""
SOLUTION_CLIP = """
def clip_norm(a, b, max_norm):
    ### BEGIN SOLUTION
    n = (a * a + b * b) ** 0.5
    return min(n, max_norm)
    ### END SOLUTION
"""
VISIBLE = "assert softmax(torch.zeros(1, 2)).sum() == 1"


def source_cells(softmax=SOLUTION_SOFTMAX, clip=SOLUTION_CLIP, setup=SETUP, visible=VISIBLE, extra=()):
    return [nbbuild.md("# Toy lab"), nbbuild.locked("setup", setup), nbbuild.solution("softmax", softmax),
            nbbuild.visible_tests("test_softmax", visible, points=3), nbbuild.solution("clip_norm", clip),
            *extra]


def notebook_bytes(path: Path, **kw) -> bytes:
    nbbuild.write(path, source_cells(**kw), title="toy")
    return path.read_bytes()


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    rub = root / "rubrics" / LAB
    rub.mkdir(parents=True)
    (rub / "rubric.yaml").write_text(RUBRIC)
    (rub / "test_toy.py").write_text(CHECKS)
    (rub / "misconceptions.py").write_text(MISCONCEPTIONS)
    src = root / "assignments" / "source" / LAB
    src.mkdir(parents=True)
    notebook_bytes(src / f"{LAB}.ipynb")
    mp = pytest.MonkeyPatch()
    mp.setenv("SPARKGRADE_RUBRICS", str(root / "rubrics"))
    mp.setenv("SPARKGRADE_ASSIGNMENTS", str(root / "assignments"))
    yield root
    mp.undo()


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
    assert set(rows["bob"]) == {"student", "assignment", "score", "max_score", "status", "checks", "flags"}
    assert {"id", "function", "points", "max_points", "status", "message", "diagnosis"} == set(
        rows["bob"]["checks"][0])
    # the same content under the same rubric is not graded again
    before = (course / ".sparkgrade" / "results" / LAB / "alice.json").stat().st_mtime_ns
    records = grade_course(course, LAB, progress=False)
    assert (course / ".sparkgrade" / "results" / LAB / "alice.json").stat().st_mtime_ns == before
    assert len(records) == 2


def test_mistyped_lab_is_one_line(toy, tmp_path, capsys):
    (tmp_path / "nbgrader_config.py").write_text("")
    assert cli.main(["grade", str(tmp_path), "lab-2.4.2-mamba-architectur"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sparkgrade grade: unknown lab") and "\n" not in err


def test_toy_lab_touches_no_engine_file():
    engine = Path(__file__).resolve().parents[1] / "autograder"
    assert not any("lab-9.9.9" in p.read_text() for p in engine.rglob("*.py"))
