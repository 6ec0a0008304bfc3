"""Issue 12: grades that no submission can game, stall or derail. Each named case of the issue has a test here;
the sandbox is stubbed where it is not the point (fast), and real where it is."""

from __future__ import annotations

import csv
import functools
import io
import os
import re
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autograder.records import CheckResult, Flag, GradeRecord


def _record(student: str, message: str = "ok", score: float = 1.0) -> GradeRecord:
    check = CheckResult("c1", "f", score, 2.0, "failed", message)
    return GradeRecord(student=student, assignment="lab-x", status="graded", score=score, max_score=2.0,
                       checks=(check,), flags=(Flag("late", "-1 h"),), content_hash="h", seed="s",
                       rubric_version="1", sandboxed=True)


# -- spreadsheet injection (item 7) -----------------------------------------------------------------------------

@pytest.mark.parametrize("evil", ["=HYPERLINK(\"http://x\",\"y\")", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"])
def test_csv_and_canvas_exports_escape_text_a_spreadsheet_would_evaluate(evil):
    from autograder.course.export import to_canvas, to_csv

    rows = list(csv.DictReader(io.StringIO(to_csv([_record(evil, message=evil, score=-0.0)]))))
    assert rows[0]["student"] == "'" + evil and rows[0]["message"] == "'" + evil
    assert rows[0]["flags"] == "late: -1 h"  # only the start of a cell matters
    canvas = list(csv.reader(io.StringIO(to_canvas([_record(evil)]))))
    assert canvas[2][0] == "'" + evil and canvas[2][2] == "'" + evil
    assert canvas[2][4] == "1.0" and canvas[1][4] == "2.0"  # numbers stay numbers


def test_exports_keep_negative_numbers_as_numbers():
    from autograder.course.export import cell

    assert cell(-1.5) == -1.5 and cell(-3) == -3 and cell("plain") == "plain"


# -- the batch always finishes (item 1) -----------------------------------------------------------------------------

SUM_CELL = "x = " + "+".join(["1"] * 100_000)  # ast.parse: RecursionError
NESTED_CELL = "x = " + "-" * 100_000 + "1"  # ast.parse: MemoryError


def test_cells_that_exhaust_the_parser_do_not_leave_the_intake():
    import ast

    import nbformat

    from autograder.intake.cells import only_definitions
    from autograder.intake.notebook import suspicious_code

    for source, error in ((SUM_CELL, RecursionError), (NESTED_CELL, MemoryError)):
        with pytest.raises(error):
            ast.parse(source)  # the cases of the issue still exhaust Python's parser
        assert only_definitions(source) is False
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
        assert suspicious_code(nb, nbformat.v4.new_notebook()) == ()


def _course(root: Path, students: dict[str, bytes], *, due: datetime | None = None) -> Path:
    from toylab import LAB

    course = root / "course"
    (course / "submitted").mkdir(parents=True)
    (course / "nbgrader_config.py").write_text("c = get_config()\n")
    for student, data in students.items():
        folder = course / "submitted" / student / LAB
        folder.mkdir(parents=True)
        (folder / f"{LAB}.ipynb").write_bytes(data)
    if due is not None:
        _gradebook(course, due)
    return course


_GRADEBOOKS: dict[datetime, bytes] = {}


def _gradebook(course: Path, due: datetime) -> None:
    """nbgrader's gradebook.db with the toy lab due at ``due``; built once (seconds), then copied."""
    if due not in _GRADEBOOKS:
        from nbgrader.api import Gradebook
        from toylab import LAB

        from autograder.course.gradebook import gradebook_url

        with Gradebook(gradebook_url(course)) as gb:
            gb.update_or_create_assignment(LAB, duedate=due)
            gb.update_or_create_notebook(LAB, LAB)
        _GRADEBOOKS[due] = (course / "gradebook.db").read_bytes()
    (course / "gradebook.db").write_bytes(_GRADEBOOKS[due])


def _stub_sandbox(monkeypatch, *, crash_for: str | None = None) -> list[str]:
    """grade_submission's sandbox and checks replaced by a fast stand-in that still chooses the cells to run and
    serialises the notebook (what the real step does with the submission's bytes before a sandbox starts)."""
    import nbformat

    from autograder import grading
    from autograder.intake.cells import select_cells
    from autograder.sandbox.calls import SandboxResult

    seen: list[str] = []

    def execute(sub, ctx, notebook, mode, seed, context):
        seen.append(sub.student)
        if sub.student == crash_for:
            raise KeyError("a bug of the grader's")
        select_cells(notebook, mode, ctx.rubric.setup_cells)
        nbformat.writes(notebook)
        run = SandboxResult("ok", None, "", None, 0.0, 0.0, True, False)
        checks = [CheckResult(cid, spec.function, spec.points, spec.points, "passed")
                  for cid, spec in ctx.rubric.checks.items()]
        return grading._Executed(run, None, tuple(checks), [], 0.0)

    monkeypatch.setattr(grading, "_execute_and_check", execute)
    return seen


@functools.cache
def _good_notebook() -> bytes:
    import tempfile

    from toylab import notebook_bytes

    with tempfile.TemporaryDirectory() as tmp:
        return notebook_bytes(Path(tmp) / "ok.ipynb")


def _good(tmp: Path | None = None) -> bytes:
    return _good_notebook()


def test_a_grader_bug_for_one_student_costs_no_other_and_is_called_a_grader_error(toy, tmp_path, monkeypatch):
    from toylab import LAB

    from autograder.batch import grade_course

    _stub_sandbox(monkeypatch, crash_for="b")
    course = _course(tmp_path, {s: _good(tmp_path) for s in "abc"})
    records = {r.student: r for r in grade_course(course, LAB, no_sandbox=True, workers=1)}
    assert sorted(records) == ["a", "b", "c"]
    assert records["a"].status == records["c"].status == "graded" and records["a"].score == 4
    assert records["b"].status == "error" and records["b"].reason.startswith("grader error while running")
    assert "KeyError" in records["b"].reason and "\n" not in records["b"].reason


def test_a_worker_that_raises_does_not_escape_run_local(toy, tmp_path, monkeypatch):
    """The pool's fut.result() re-raised a worker's exception and `sparkgrade grade` exited 1 for everyone."""
    from autograder import batch
    from autograder.intake.submission import Submission

    def boom(task, gpu=None):
        raise RuntimeError("worker bug")

    monkeypatch.setattr(batch, "run_task", boom)
    from toylab import LAB

    task = batch.GradeTask(Submission("s", LAB, b"{}"), "seed", None, no_sandbox=True)
    (result,) = list(batch.run_local([task], 1))
    assert result.record.status == "error" and "grader error" in result.record.reason
    assert "RuntimeError: worker bug" in result.record.reason


@pytest.mark.parametrize("stamp", [b"garbage", b"2026-13-45 99:99:99", b"\xff\xfe" * 50, b"9" * 5000,
                                   b"2026-01-01 00:00:00 /etc/shadow", "symlink", "directory", "huge", "fifo"])
def test_a_garbage_or_planted_timestamp_is_a_flag_and_the_batch_goes_on(toy, tmp_path, monkeypatch, stamp):
    from toylab import LAB

    from autograder.batch import grade_course

    _stub_sandbox(monkeypatch)
    course = _course(tmp_path, {"bad": _good(tmp_path), "late": _good(tmp_path)}, due=datetime(2026, 1, 1))
    folder = course / "submitted" / "bad" / LAB
    if stamp == "symlink":
        (folder / "timestamp.txt").symlink_to("/etc/passwd")
    elif stamp == "directory":
        (folder / "timestamp.txt").mkdir()
    elif stamp == "huge":  # 4 GiB, sparse: the grader must not read it (nor fill its memory) to refuse it
        with open(folder / "timestamp.txt", "wb") as f:
            f.truncate(4 << 30)
    elif stamp == "fifo":  # opening a FIFO for reading would wait for a writer forever
        os.mkfifo(folder / "timestamp.txt")
    else:
        (folder / "timestamp.txt").write_bytes(stamp)
    (course / "submitted" / "late" / LAB / "timestamp.txt").write_text("2026-01-01 02:00:00.000000 UTC")
    records = {r.student: r for r in grade_course(course, LAB, no_sandbox=True, workers=1)}
    assert sorted(records) == ["bad", "late"]
    (flag,) = [f for f in records["bad"].flags if f.kind == "timestamp"]
    assert "timestamp.txt" in flag.message and "root:" not in flag.message
    assert records["bad"].score == 4 and records["bad"].status == "graded"
    assert [f.message for f in records["late"].flags if f.kind == "late"] == [
        "submitted 2.0 h after the due date (nbgrader's late policy applies)"]


def test_a_stored_invalid_record_is_not_retried_until_the_content_changes(toy, tmp_path, monkeypatch):
    from toylab import LAB

    from autograder.batch import grade_course

    seen = _stub_sandbox(monkeypatch)
    course = _course(tmp_path, {"a": _good(tmp_path), "b": b"{not a notebook"})
    first = {r.student: r for r in grade_course(course, LAB, no_sandbox=True, workers=1)}
    assert first["b"].status == "invalid" and seen == ["a"]
    again = {r.student: r for r in grade_course(course, LAB, no_sandbox=True, workers=1)}
    assert again["b"] == first["b"] and seen == ["a"]  # nothing regraded
    (course / "submitted" / "b" / LAB / f"{LAB}.ipynb").write_bytes(_good(tmp_path))
    grade_course(course, LAB, no_sandbox=True, workers=1)
    assert seen == ["a", "b"]


# What a submission folder may hold, generated: notebooks (valid ones with odd cells and metadata, deeply nested
# JSON, random bytes), timestamps (dates, garbage, huge, links) and data files (bytes, links, folders).
_json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
_metadata = st.recursive(_json_leaf, lambda inner: st.lists(inner, max_size=3)
                         | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=12)
_nbgrader_meta = st.fixed_dictionaries({}, optional={
    "grade_id": st.sampled_from(["setup", "softmax", "clip_norm", "test_softmax", "x"]) | st.text(max_size=5),
    "locked": st.booleans() | _json_leaf, "solution": st.booleans() | _json_leaf, "grade": st.booleans() | _json_leaf,
    "points": _json_leaf})
_sources = (st.text(max_size=200) | st.sampled_from([SUM_CELL, NESTED_CELL, "%%bash\nls", "import socket\n",
                                                     "def softmax(x):\n    return x\n", "\0", "x = " + "[" * 300]))


@st.composite
def _notebooks(draw) -> bytes:
    import json

    import nbformat

    kind = draw(st.sampled_from(["cells", "nested", "bytes", "json"]))
    if kind == "nested":
        depth = draw(st.integers(100, 200_000))
        return b'{"cells": ' + b"[" * depth + b"]" * depth + b"}"
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "json":
        return json.dumps(draw(_metadata)).encode()
    cells = []
    for source, meta, code in draw(st.lists(st.tuples(_sources, _nbgrader_meta, st.booleans()), max_size=6)):
        cell = nbformat.v4.new_code_cell(source) if code else nbformat.v4.new_markdown_cell(source)
        cell.metadata["nbgrader"] = meta
        cell.metadata["extra"] = draw(_metadata)
        cells.append(cell)
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"x": draw(_metadata)})
    return nbformat.writes(nb, version=4).encode()


_stamps = st.none() | st.binary(max_size=64) | st.sampled_from(
    [b"2026-01-02 00:00:00.000000 UTC", b"2025-12-31T23:00:00Z", b"9" * 3000, "symlink", "directory", "fifo"])
_data = st.none() | st.binary(max_size=64) | st.sampled_from([b"[]", b"{}", b"[" * 5000, "symlink", "directory"])


def _plant(folder: Path, name: str, what: bytes | str | None) -> None:
    import os

    path = folder / name
    if what is None:
        return
    if what == "symlink":
        path.symlink_to("/etc/passwd")
    elif what == "directory":
        path.mkdir()
    elif what == "fifo":
        os.mkfifo(path)
    else:
        assert isinstance(what, bytes)
        path.write_bytes(what)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.tuples(_notebooks(), _stamps, _data), min_size=1, max_size=3))
def test_every_generated_submission_gets_a_one_line_record_and_a_rerun_regrades_none(toy, monkeypatch, subs):
    import tempfile

    from toylab import LAB

    from autograder import batch

    seen = _stub_sandbox(monkeypatch)
    with tempfile.TemporaryDirectory() as tmp:
        students = {f"s{i}": nb for i, (nb, _, _) in enumerate(subs)}
        course = _course(Path(tmp), students, due=datetime(2026, 1, 1))
        for i, (_, stamp, data) in enumerate(subs):
            folder = course / "submitted" / f"s{i}" / LAB
            _plant(folder, "timestamp.txt", stamp)
            _plant(folder, "benchmarks.json", data)
        records = {r.student: r for r in batch.grade_course(course, LAB, no_sandbox=True, workers=1)}
        assert sorted(records) == sorted(students)
        for r in records.values():
            assert r.status in ("graded", "invalid", "error")
            assert "\n" not in r.reason and len(r.reason) <= 500
            assert r.status == "graded" or r.reason
            assert "grader error" not in r.reason, r.reason  # nothing generated here is the grader's fault
        graded = len(seen)
        again = {r.student: r for r in batch.grade_course(course, LAB, no_sandbox=True, workers=1)}
        assert again == records and len(seen) == graded  # stored like any record: not retried


@pytest.mark.slow
def test_six_sandboxed_submissions_with_a_parser_exhausting_cell_all_get_records(toy, tmp_path):
    """The issue's case end to end, in real sandboxes: one student's solution cell is `x = 1+1+...+1` (100,000
    terms), another's a deeply nested expression, a third's timestamp.txt is garbage. Before, none of the six got a
    record and `sparkgrade grade` exited 1."""
    from toylab import LAB, SOLUTION_SOFTMAX, notebook_bytes

    from autograder import cli
    from autograder.db.store import CourseStore
    from autograder.sandbox import check_sandbox_available

    check_sandbox_available()
    students = {f"s{i}": notebook_bytes(tmp_path / f"s{i}.ipynb") for i in range(4)}
    students["sum"] = notebook_bytes(tmp_path / "sum.ipynb", softmax=SOLUTION_SOFTMAX + "\n" + SUM_CELL)
    students["nested"] = notebook_bytes(tmp_path / "nested.ipynb", softmax=SOLUTION_SOFTMAX + "\n" + NESTED_CELL)
    course = _course(tmp_path, students, due=datetime(2026, 1, 1))
    (course / "submitted" / "s3" / LAB / "timestamp.txt").write_bytes(b"\x00garbage")
    assert cli.main(["grade", str(course), LAB, "--workers", "1"]) == 0
    records = {r.student: r for r in CourseStore(course).records(LAB)}
    assert sorted(records) == sorted(students)
    for student in ("s0", "s1", "s2", "s3"):
        assert records[student].status == "graded" and records[student].score == 4, records[student]
    assert [f.kind for f in records["s3"].flags] == ["timestamp"]
    # The kernel meets the same cells: the nested one raises there (softmax is then undefined, clip_norm still
    # earns its point); IPython spends the whole notebook_s on the 100,000-term sum (a timeout). Each is that
    # student's own record, with a one-line reason.
    assert records["nested"].status == "graded" and records["nested"].score == 1, records["nested"]
    assert records["sum"].status in ("timeout", "graded") and "\n" not in records["sum"].reason


# -- replies are the submission's responsibility (item 4) ----------------------------------------------------------

def _call_folder(tmp_path: Path, out_json: bytes | None = None) -> tuple[int, str]:
    import os

    calls = tmp_path / "calls" / "c1"
    calls.mkdir(parents=True)
    if out_json is not None:
        (calls / "out.json").write_bytes(out_json)
    return os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY), "calls"


def _node(depth: int) -> str:
    return '{"t": "int", "v": 1}' if depth == 0 else '{"t": "list", "items": [' + _node(depth - 1) + "]}"


@pytest.mark.parametrize("reply,expected", [
    (b'{"result": ' + b'{"t": "list", "items": [' * 100_000 + b"]}" * 100_000 + b"}", "nested too deeply"),
    (b'{"result": [' + b"[" * 50_000 + b"]" * 50_000 + b"]}", "nested too deeply"),
    (b'{"result": {"t": "int", "v": 1' + b"0" * 5000 + b"}}", "not valid JSON"),
    (b'{"result": {"t": "float", "v": 1' + b"0" * 400 + b"}}", "cannot be read back"),
    (b'{"result": {"t": "none"}, "wall_s": 1' + b"0" * 400 + b"}", "cannot be read back"),
    (b'{"result": {"t": "str", "v": "\xff\xfe"}}', "not valid JSON"),
    (b'{"result": {"t": "str", "v": "' + b"\\\\" * 10 + b'[[[["}}', None),  # brackets inside strings don't count
    (("{\"result\": " + _node(8) + "}").encode(), None),  # the deepest value the codec allows still decodes
])
def test_every_decode_error_of_a_reply_is_an_output_error_the_student_can_read(tmp_path, reply, expected):
    from autograder.sandbox.codec import OutputError, read_call_outputs

    work_fd, calls = _call_folder(tmp_path, reply)
    if expected is None:
        read_call_outputs(work_fd, calls, "c1", 1 << 26)
        return
    with pytest.raises(OutputError, match=expected):
        read_call_outputs(work_fd, calls, "c1", 1 << 26)


@pytest.mark.parametrize("which", ["calls", "call"])
def test_a_call_folder_replaced_by_a_link_is_an_output_error(tmp_path, which):
    import shutil

    from autograder.sandbox.codec import OutputError, read_call_outputs

    work_fd, calls = _call_folder(tmp_path, b'{"result": {"t": "none"}}')
    target = tmp_path / "calls" if which == "calls" else tmp_path / "calls" / "c1"
    shutil.rmtree(target)
    target.symlink_to("/etc")
    with pytest.raises(OutputError, match="removed or replaced"):
        read_call_outputs(work_fd, calls, "c1", 1 << 26)


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def test_a_60_mb_reply_of_empty_lists_leaves_the_workers_memory_where_it_was(tmp_path):
    """Before: json.loads first, MAX_ITEMS after; the trusted worker grew from 0.3 to 1.6 GB."""
    from autograder.sandbox.codec import OutputError, read_call_outputs

    work_fd, calls = _call_folder(tmp_path)
    with open(tmp_path / "calls" / "c1" / "out.json", "wb") as f:  # written in pieces: the test holds no 60 MB
        f.write(b'{"result": {"t": "list", "items": [')
        for _ in range(60):
            f.write(b"[]," * 333_333 + b"[],")
        f.write(b"[]]}}")
    assert (tmp_path / "calls" / "c1" / "out.json").stat().st_size > 60_000_000
    before = _rss_bytes()
    with pytest.raises(OutputError, match="over the"):
        read_call_outputs(work_fd, calls, "c1", 64 << 20)  # the sandbox's call_output_bytes default
    after = _rss_bytes()
    print(f"worker RSS before {before / 2**20:.1f} MiB, after {after / 2**20:.1f} MiB")
    assert after - before < 50 << 20


@pytest.mark.slow
def test_a_call_folder_replaced_by_the_submission_fails_its_checks_not_the_grader(toy, tmp_path):
    """Student code swaps the grader's call folder for a link: every later call fails with a message the student
    can read, and nothing is reported as a grader error (it was NotADirectoryError out of the check)."""
    from toylab import LAB, SOLUTION_SOFTMAX, notebook_bytes

    from autograder.grading import grade_submission, load_lab
    from autograder.intake.submission import Submission
    from autograder.sandbox import check_sandbox_available

    check_sandbox_available()
    swap = SOLUTION_SOFTMAX + ("\nimport os, shutil\nshutil.rmtree('.sparkgrade-calls', ignore_errors=True)\n"
                               "os.symlink('/etc', '.sparkgrade-calls')\n")
    data = notebook_bytes(tmp_path / "swap.ipynb", softmax=swap)
    record, _ = grade_submission(Submission("swap", LAB, data), load_lab(None, LAB), seed="fixed")
    assert not [f for f in record.flags if f.kind == "grader-error"], record.flags
    assert record.score == 0 and all(c.status == "error" for c in record.checks)
    assert all("call folder" in c.message for c in record.checks), [c.message for c in record.checks]


# -- bounded time (item 2) -----------------------------------------------------------------------------------------

class _FakeCaller:
    """Stands in for the sandbox: each call takes ``wall_s`` and ends as ``status``; what was asked is kept."""

    def __init__(self, status: str = "ok", wall_s: float = 0.0) -> None:
        self.status, self.wall_s = status, wall_s
        self.calls: list[tuple[str, float | None]] = []

    def call(self, function, args=(), kwargs=None, *, timeout_s=None, device=None):
        import time

        import torch

        from autograder.sandbox.calls import CallResult

        self.calls.append((function, timeout_s))
        time.sleep(self.wall_s)
        if self.status != "ok":
            return CallResult(self.status, error="stopped")
        if function == "softmax":
            return CallResult("ok", value=torch.softmax(args[0], -1))
        return CallResult("ok", value=1.0)


def _toy_rubric(**limits):
    import yaml
    from toylab import RUBRIC

    from autograder.rubric import Rubric

    data = yaml.safe_load(RUBRIC)
    data["limits"].update(limits)
    return Rubric.model_validate(data)


def test_a_function_that_timed_out_is_not_called_again(toy):
    from autograder.checks.plugin import SubmissionContext
    from autograder.checks.runner import run_checks

    caller = _FakeCaller("timeout")
    results, grader_errors = run_checks(_toy_rubric(), caller, "seed", SubmissionContext("s", "lab"))
    assert [f for f, _ in caller.calls].count("softmax") == 1  # two checks call softmax; only the first ran
    by = {r.id: r for r in results}
    assert by["softmax_rows"].message == "softmax did not return in time"
    assert by["softmax_shape"].message == "softmax timed out earlier in this submission, so it was not called again"
    assert by["clip_norm_value"].status == "error" and not grader_errors  # another function is still called


def test_the_checks_budget_cuts_call_timeouts_and_fails_checks_past_it(toy):
    from autograder.checks.plugin import SubmissionContext
    from autograder.checks.runner import run_checks

    # 2 s calls under a 3 s budget: the second call starts with about 1 s left (the slack absorbs a loaded host's
    # own overhead between the calls), the third check finds the budget spent.
    caller = _FakeCaller("ok", wall_s=2.0)
    results, _ = run_checks(_toy_rubric(checks_s=3.0, call_s=20), caller, "seed", SubmissionContext("s", "lab"))
    timeouts = [t for _, t in caller.calls]
    assert len(timeouts) == 2 and timeouts[0] <= 3.0 and timeouts[1] <= 1.0  # each cut to the time left
    by = {r.id: r for r in results}
    assert [r.status for r in results].count("passed") == 2
    (late,) = [r for r in results if r.status != "passed"]
    assert late.status == "error" and late.message == ("not run: this submission's checks used up their time "
                                                       "budget (3 s)")
    assert late.id in by


def test_a_spent_checks_budget_is_flagged_for_a_person_and_an_unspent_one_is_not(toy):
    """The budget is wall-clock time: a busy machine spends it as surely as a slow submission (issue 21), so the
    checks it cut are flagged for a person to regrade, never silently zero."""
    from autograder.checks.plugin import SubmissionContext
    from autograder.checks.runner import run_all_checks

    outcome = run_all_checks(_toy_rubric(checks_s=1.0, call_s=20), _FakeCaller("ok", wall_s=0.6), "seed",
                             SubmissionContext("s", "lab"))
    (flag,) = [f for f in outcome.flags if f.kind == "time-budget"]
    assert re.match(r"[12] call\(s\) of the student's functions were not made", flag.message), flag.message
    assert "--force" in flag.message
    outcome = run_all_checks(_toy_rubric(), _FakeCaller("ok"), "seed", SubmissionContext("s", "lab"))
    assert not [f for f in outcome.flags if f.kind == "time-budget"]


def test_a_sandbox_gets_a_cpu_quota_from_its_cgroup():
    from autograder.sandbox.cgroup import Cgroup

    group = Cgroup.create(1 << 30, 64, cpus=0.5)
    if group is None or group.cpu_quota is None:
        pytest.skip("this host lets the grader create no cgroup with a cpu controller (the runner nices itself)")
    try:
        if group.version == 2:
            assert (group.dirs[0] / "cpu.max").read_text().split() == ["50000", "100000"]
        else:
            cpu = group.dirs[2]
            assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "50000"
            assert (cpu / "cpu.cfs_period_us").read_text().strip() == "100000"
        assert len(group.procs_files()) == len(group.dirs)  # the launcher joins the cpu group too
    finally:
        group.remove()


@pytest.mark.slow
def test_a_hanging_function_costs_one_call_s_not_one_per_check(toy, tmp_path):
    """`while True: pass` in softmax: the first check waits call_s (20 s in the toy rubric), the second fails at
    once; before, every check that called it waited call_s in turn."""
    from toylab import LAB, SOLUTION_SOFTMAX, notebook_bytes

    from autograder.grading import grade_submission, load_lab
    from autograder.intake.submission import Submission
    from autograder.sandbox import check_sandbox_available

    check_sandbox_available()
    # Hangs on the checks' inputs only: the notebook's own visible test (a 1 x 2 input) must still run.
    loop = "### BEGIN SOLUTION\n    while x.shape[0] != 1:\n        pass"
    hang = SOLUTION_SOFTMAX.replace("### BEGIN SOLUTION", loop)
    data = notebook_bytes(tmp_path / "hang.ipynb", softmax=hang)
    ctx = load_lab(None, LAB)
    record, _ = grade_submission(Submission("hang", LAB, data), ctx, seed="fixed")
    by = {c.id: c for c in record.checks}
    assert by["softmax_rows"].message == "softmax did not return in time"
    assert "timed out earlier" in by["softmax_shape"].message
    assert by["clip_norm_value"].status == "passed"
    call_s = ctx.rubric.sandbox_limits.call_s
    assert record.timings["checks_s"] < 2 * call_s, record.timings


# -- forbid: calls a rubric forbids, traced inside the sandbox (item 5) ---------------------------------------------

LBL_LAB = "lab-2.4.4-moe-router"
LBL_CHECKS = ["lbl_single_layer", "lbl_pooled_layers", "lbl_attention_mask", "lbl_all_but_one_masked",
              "lbl_balanced_scale"]
# Bound before the call (`from ... import`): wrapping the module attribute would not see it; tracing does.
LBL_CALLS_TRANSFORMERS = """
import torch
from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func as _lbl

def load_balancing_loss(gate_logits, num_experts, top_k, attention_mask=None):
    layers = (gate_logits,) if isinstance(gate_logits, torch.Tensor) else tuple(gate_logits)
    return _lbl(layers, num_experts, top_k, attention_mask)
"""


def _rubric_with_policy(policy: str):
    from autograder.rubric import Rubric, load_rubric

    data = load_rubric(LBL_LAB).model_dump()
    data["forbid"]["load_balancing_loss"]["policy"] = policy
    return Rubric.model_validate(data)


@pytest.mark.slow
def test_load_balancing_loss_calling_transformers_scores_zero_under_zero_and_is_flagged_under_flag(monkeypatch):
    # the course's own rubric and notebook, whatever an earlier test's toy lab set in this worker
    monkeypatch.delenv("SPARKGRADE_RUBRICS", raising=False)
    monkeypatch.delenv("SPARKGRADE_ASSIGNMENTS", raising=False)
    import nbformat

    from assignments.labs.lab_2_4_4 import LOAD_BALANCING
    from autograder.checks.plugin import SubmissionContext
    from autograder.checks.runner import run_all_checks
    from autograder.sandbox import Sandbox, check_sandbox_available

    check_sandbox_available()

    def notebook(source: str) -> bytes:
        return nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])).encode()

    context = SubmissionContext("s", LBL_LAB)
    with Sandbox(notebook(LBL_CALLS_TRANSFORMERS)) as sandbox:
        assert sandbox.run().status == "ok"
        zero = run_all_checks(_rubric_with_policy("zero"), sandbox, "seed", context, LBL_CHECKS)
        flag = run_all_checks(_rubric_with_policy("flag"), sandbox, "seed", context, LBL_CHECKS)
    assert all(r.points == 0 and r.status == "failed" for r in zero.results), zero.results
    assert "load_balancing_loss_func" in zero.results[0].message and "forbids" in zero.results[0].message
    (z,) = zero.flags
    assert z.kind == "forbidden-call" and "modeling_mixtral.load_balancing_loss_func" in z.message
    (f,) = flag.flags
    assert f.kind == "forbidden-call" and "for review" in f.message
    assert sum(r.points for r in flag.results) > 0  # the points stand under "flag": a person decides
    # The course's own answer trips nothing.
    answer = "import torch\n" + "\n".join(line for line in LOAD_BALANCING.splitlines() if "SOLUTION" not in line)
    with Sandbox(notebook(answer)) as sandbox:
        assert sandbox.run().status == "ok"
        own = run_all_checks(_rubric_with_policy("zero"), sandbox, "seed", context, LBL_CHECKS)
    assert not own.flags and all(r.status == "passed" for r in own.results), own.results


def test_a_forbidden_call_reported_from_inside_zeroes_only_that_function(toy):
    """The grader's side of the policy, with the sandbox stubbed: what the harness reports is applied per function,
    and a caller that reports nothing (no forbid for the function) is never asked to trace."""
    from autograder.checks.plugin import SubmissionContext
    from autograder.checks.runner import run_all_checks
    from autograder.rubric import Rubric
    from autograder.sandbox.calls import CallResult

    asked: list[tuple[str, tuple[str, ...]]] = []

    class Reporting(_FakeCaller):
        """Reports the forbidden call the harness would have seen, when asked to trace one."""

        def call(self, function, args=(), kwargs=None, *, timeout_s=None, device=None, forbid=()):
            asked.append((function, tuple(forbid)))
            result = super().call(function, args, kwargs, timeout_s=timeout_s, device=device)
            return CallResult("ok", value=result.value, forbidden=tuple(forbid))

    rubric = Rubric.model_validate({**_toy_rubric().model_dump(), "forbid": {"softmax": {"calls": ["torch.softmax"]}}})
    caller = Reporting()
    outcome = run_all_checks(rubric, caller, "seed", SubmissionContext("s", "lab"))
    by = {r.id: r for r in outcome.results}
    assert by["softmax_rows"].points == by["softmax_shape"].points == 0
    assert by["clip_norm_value"].status == "passed" and by["clip_norm_value"].points == 1
    assert [f.kind for f in outcome.flags] == ["forbidden-call"]
    assert sorted(set(asked)) == [("clip_norm", ()), ("softmax", ("torch.softmax",))]


# -- the sandbox is nobody on the host (item 3) -----------------------------------------------------------------------

def _host_uid_of(uid_map: str, inside_uid: int) -> int:
    for line in uid_map.splitlines():
        inside, host, count = (int(x) for x in line.split())
        if inside <= inside_uid < inside + count:
            return host + inside_uid - inside
    raise AssertionError(f"uid {inside_uid} is not mapped: {uid_map!r}")


@pytest.mark.slow
@pytest.mark.parametrize("warm", [True, False], ids=["warm", "cold"])
def test_a_sandbox_of_a_root_grader_runs_as_an_unprivileged_host_uid(warm):
    """Read inside, by a notebook cell and by a call: the sandbox's uid maps onto a host uid that is neither 0 nor
    the grader's, with no capabilities and no nested user namespace; the work folder is that uid's alone, what the
    sandbox writes there is that uid's on the host, and the grader still reads it back."""
    import json
    import os

    import nbformat

    from autograder.sandbox import Sandbox, check_sandbox_available
    from autograder.sandbox import zygote as zg

    check_sandbox_available()
    if os.geteuid() != 0:
        pytest.skip("the grader is not root: the sandbox maps onto the grader's own uid, nobody special on the host")
    source = ("import os, json, ctypes\ndef ids():\n    return open('/proc/self/uid_map').read(), os.getuid()\n"
              "caps = [line.split()[1] for line in open('/proc/self/status')\n"
              "        if line.startswith(('CapPrm', 'CapEff', 'CapBnd'))]\n"
              "nested = ctypes.CDLL(None, use_errno=True).unshare(0x10000000)  # CLONE_NEWUSER\n"
              "print(json.dumps([ids(), caps, nested]))\nopen('/submission/written.txt', 'w').write('inside')")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    with Sandbox(nbformat.writes(nb).encode(), warm=warm) as sandbox:
        run = sandbox.run()
        if warm and not sandbox.timings.get("warm_start"):
            pytest.skip(f"no warm start on this host ({zg.__name__}: cgroups or namespaces unavailable)")
        assert bool(sandbox.timings.get("warm_start")) == warm
        assert run.status == "ok", (run.detail, sandbox.stderr_tail())
        printed, caps, nested = json.loads(nbformat.reads(run.notebook.decode(), 4).cells[0].outputs[0]["text"])
        assert caps == ["0000000000000000"] * 3 and nested == -1
        called = sandbox.call("ids")
        assert called.ok, called.error
        for uid_map, uid in (printed, called.value):
            host = _host_uid_of(uid_map, uid)
            assert host not in (0, os.geteuid()), uid_map
        work = sandbox.work_dir
        assert work.stat().st_uid == host and work.stat().st_mode & 0o077 == 0  # writable for that uid only
        assert (work / "written.txt").stat().st_uid == host  # the host's own view agrees with the map read inside
        assert (work / "written.txt").read_text() == "inside"  # the grader reads back what the sandbox wrote


def test_the_seccomp_program_refuses_nested_user_namespaces_and_nothing_else(tmp_path):
    """Cold starts of a root grader replace bwrap's --disable-userns by this program (bwrap.RootMap): loaded into a
    child here, it refuses unshare(CLONE_NEWUSER) and clone3, while threads and subprocesses still start."""
    import platform
    import subprocess
    import sys

    from autograder.sandbox import bwrap as bw

    if platform.machine() not in ("x86_64", "aarch64"):
        pytest.skip(f"no seccomp program for {platform.machine()}")
    (tmp_path / "prog").write_bytes(bw.seccomp_no_userns())
    child = (
        "import ctypes, subprocess, sys, threading\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "prog = open(sys.argv[1], 'rb').read()\n"
        "buf = ctypes.create_string_buffer(prog)\n"
        "class Fprog(ctypes.Structure):\n"
        "    _fields_ = [('len', ctypes.c_ushort), ('filter', ctypes.c_void_p)]\n"
        "fp = Fprog(len(prog) // 8, ctypes.cast(buf, ctypes.c_void_p))\n"
        "assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS\n"
        "assert libc.prctl(22, 2, ctypes.byref(fp), 0, 0) == 0, ctypes.get_errno()  # SECCOMP_MODE_FILTER\n"
        "out = []\n"
        "out.append(libc.unshare(0x10000000) == -1 and ctypes.get_errno() == 1)  # EPERM\n"
        "out.append(libc.unshare(0) == 0)  # unshare without CLONE_NEWUSER passes the program\n"
        "out.append(libc.syscall(435, 0, 0) == -1 and ctypes.get_errno() == 38)  # clone3: ENOSYS, libc falls back\n"
        "t = threading.Thread(target=out.append, args=(True,)); t.start(); t.join()\n"
        "out.append(subprocess.run(['/bin/true']).returncode == 0)\n"
        "print(out)\n"
    )
    done = subprocess.run([sys.executable, "-c", child, str(tmp_path / "prog")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[True, True, True, True, True]"


def test_a_root_graders_cold_argv_waits_for_the_map_and_drops_to_the_sandbox_uid(tmp_path):
    from pathlib import Path

    from autograder.sandbox import bwrap as bw

    mounts = bw.Mounts(work_dir=tmp_path / "work", etc_dir=tmp_path / "etc", runner_dir=tmp_path / "inside",
                       python_dirs=(Path("/root/.pyenv/versions/3.11"), Path("/usr")))
    root_map = bw.RootMap(host_id=65534, block_fd=11, info_fd=12, seccomp_fd=13)
    argv = bw.build_argv(mounts, {}, tmp_bytes=1 << 20, root_map=root_map)
    joined = " ".join(argv)
    assert "--disable-userns" not in argv and "--uid" not in argv  # bwrap refuses both with a block fd
    assert "--userns-block-fd 11 --info-fd 12 --seccomp 13" in joined
    assert "--perms 0755 --dir /root --perms 0755 --dir /root/.pyenv" in joined and "--dir /usr" not in joined
    assert "--perms 1777 --tmpfs /tmp" in joined
    tail = argv[argv.index("--", argv.index("--chdir")) + 1:]
    assert tail[0] == bw.SETPRIV and "--reuid=65534" in tail and "--bounding-set=-all" in tail
    assert tail[tail.index("--") + 2:] == ["-I", bw.INSIDE_RUNNER]
    plain = bw.build_argv(mounts, {}, tmp_bytes=1 << 20)
    assert "--disable-userns" in plain and bw.SETPRIV not in plain and "--perms" not in plain


def test_a_root_graders_models_folder_is_opened_to_the_sandbox_uid_it_maps_onto(tmp_path):
    """save_pretrained writes 0600 files and pytest 0700 folders: nobody on the host could not load them."""
    import stat

    from autograder.sandbox import bwrap as bw

    models = tmp_path / "models"
    (models / "tiny").mkdir(parents=True)
    (models / "tiny" / "model.safetensors").write_bytes(b"weights")
    (models / "tiny" / "model.safetensors").chmod(0o600)
    models.chmod(0o700)
    assert bw.open_models_to_others(models) is None
    assert stat.S_IMODE(models.stat().st_mode) == 0o705
    assert stat.S_IMODE((models / "tiny" / "model.safetensors").stat().st_mode) == 0o604


def test_a_forbidden_call_is_shown_on_the_feedback_page_and_in_the_class_report(tmp_path):
    """The flag that run_all_checks makes (see above) reaches the student's page and the instructor's report."""
    with pytest.MonkeyPatch.context() as mp:  # the session's toy lab (conftest) hides the course's rubrics
        mp.delenv("SPARKGRADE_RUBRICS", raising=False)
        mp.delenv("SPARKGRADE_ASSIGNMENTS", raising=False)
        _forbidden_call_shown(tmp_path)


def _forbidden_call_shown(tmp_path):
    from autograder.checks.runner import apply_forbid
    from autograder.feedback.page import write_feedback
    from autograder.feedback.report import write_report

    rubric = _rubric_with_policy("zero")
    check = CheckResult("lbl_uniform", "load_balancing_loss", 2.0, 2.0, "passed")
    called = ["transformers.models.mixtral.modeling_mixtral.load_balancing_loss_func"]
    checks, flags = apply_forbid(rubric, [check], {"load_balancing_loss": called})
    rec = GradeRecord(student="s1", assignment=LBL_LAB, status="graded", score=0.0, max_score=2.0,
                      checks=tuple(checks), flags=(*flags, Flag("timestamp", "for the instructor")),
                      content_hash="h", seed="s", rubric_version="1", sandboxed=True)
    page = write_feedback(tmp_path, rec, rubric, "cpu").read_text()
    assert 'id="forbidden-calls"' in page and "modeling_mixtral.load_balancing_loss_func" in page
    assert "for the instructor" not in page  # an instructor's flag stays off the student's page
    clean = GradeRecord(**{**rec.__dict__, "student": "s2", "flags": ()})
    assert 'id="forbidden-calls"' not in write_feedback(tmp_path, clean, rubric, "cpu").read_text()
    report = write_report(tmp_path, [rec, clean], rubric).read_text()
    assert "forbidden-call" in report and "modeling_mixtral.load_balancing_loss_func" in report
