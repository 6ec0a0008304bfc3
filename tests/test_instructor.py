"""The instructor's side of the command line: nothing overwritten, nothing hidden, nothing left as a traceback.
Each bad input an instructor met (issue 19) is a named case here; the toy lab keeps these tests fast."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from toylab import LAB, notebook_bytes

from autograder import cli
from autograder.db.store import CourseStore
from autograder.intake.submission import find_submissions, read_submission_folder
from autograder.order import natural_key
from autograder.records import CheckResult, Flag, GradeRecord

ROOT = Path(__file__).resolve().parents[1]


def one_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


# -- every submitted folder is a submission ------------------------------------------------------------------------


def test_student_ids_sort_naturally():
    assert sorted(["s10", "s7", "S11", "s2", "alice"], key=natural_key) == ["alice", "s2", "s7", "s10", "S11"]


def test_a_folder_without_the_expected_notebook_is_found_and_says_what_it_holds(tmp_path):
    course = tmp_path / "course"
    for student, name in (("s10", f"{LAB}.ipynb"), ("s7", "Untitled.ipynb"), ("s8", None)):
        folder = course / "submitted" / student / LAB
        folder.mkdir(parents=True)
        (folder / "timestamp.txt").write_text("2026-11-30 10:00:00 UTC")
        if name:
            (folder / name).write_text("{}")
    found = find_submissions(course, LAB, None)
    assert [s for s, _ in found] == ["s7", "s8", "s10"]
    misnamed = read_submission_folder("s7", LAB, found[0][1])
    assert misnamed.problem == (f"found Untitled.ipynb, expected {LAB}.ipynb: rename the notebook to {LAB}.ipynb "
                                "and submit again")
    empty = read_submission_folder("s8", LAB, found[1][1])
    assert empty.problem.startswith("found no notebook in the submitted folder, expected")
    assert read_submission_folder("s10", LAB, found[2][1]).problem == ""
    assert misnamed.content_hash != empty.content_hash  # renaming it is new content, graded again


def test_misnamed_notebook_is_stored_invalid_and_exported(toy, tmp_path, capsys):
    course = tmp_path / "course"
    (course / "submitted" / "s7" / LAB).mkdir(parents=True)
    notebook_bytes(course / "submitted" / "s7" / LAB / "Untitled.ipynb")
    (course / "nbgrader_config.py").write_text("c = get_config()\n")
    assert cli.main(["grade", str(course), LAB]) == 0
    capsys.readouterr()
    assert cli.main(["export", str(course), "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["student"] == "s7" and row["status"] == "invalid" and row["score"] == 0
    assert "found Untitled.ipynb, expected" in row["checks"][0]["message"]


# -- one line per failure, with its own exit code -------------------------------------------------------------------


def record(student: str, score: float = 3.0) -> GradeRecord:
    checks = (CheckResult("softmax_rows", "softmax", min(score, 2.0), 2.0, "passed" if score >= 2 else "failed"),
              CheckResult("softmax_shape", "softmax", 1.0, 1.0, "passed"),
              CheckResult("clip_norm_value", "clip_norm", max(score - 3.0, 0.0), 1.0, "failed", "expected 1.0"))
    return GradeRecord(student=student, assignment=LAB, status="graded", score=score, max_score=4.0, checks=checks,
                       flags=(), content_hash=f"hash-{student}", seed="seed", rubric_version="1", sandboxed=True)


@pytest.fixture
def graded(toy, tmp_path) -> Path:
    """A course with three stored grades (no sandbox needed: the store is filled directly)."""
    course = tmp_path / "course"
    course.mkdir()
    (course / "nbgrader_config.py").write_text("c = get_config()\n")
    with CourseStore(course) as store:
        for student, score in (("s10", 4.0), ("s7", 3.0), ("s2", 1.0)):
            store.save(record(student, score), None)
    return course


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_export_format_follows_the_file_suffix_and_contradictions_are_refused(graded, tmp_path, capsys):
    code, _, err = run_cli(capsys, "export", graded, "-o", tmp_path / "grades.csv")
    assert code == 0 and "(csv)" in err
    text = (tmp_path / "grades.csv").read_text()
    assert text.startswith("student,assignment,status,")
    assert stat.S_IMODE((tmp_path / "grades.csv").stat().st_mode) == 0o644  # readable by the group and others
    code, _, err = run_cli(capsys, "export", graded, "-o", tmp_path / "grades.json", "--format", "csv")
    assert code == 2 and "contradicts the file name" in one_line(err)
    code, _, err = run_cli(capsys, "export", graded, "-o", tmp_path / "grades.txt")
    assert code == 2 and "add --format json, csv or canvas" in one_line(err)
    assert not (tmp_path / "grades.json").exists() and not (tmp_path / "grades.txt").exists()


def test_export_students_are_in_natural_order(graded, capsys):
    code, out, _ = run_cli(capsys, "export", graded)
    assert code == 0 and [r["student"] for r in json.loads(out)] == ["s2", "s7", "s10"]


@pytest.mark.parametrize(("case", "target", "message"), [
    ("into a missing folder", "missing/grades.csv", "no folder"),
    ("onto a folder", ".", "is a folder: give a file name"),
])
def test_export_output_path_problems_are_one_line_exit_4(graded, tmp_path, capsys, case, target, message):
    code, _, err = run_cli(capsys, "export", graded, "-o", tmp_path / target, "--format", "csv")
    assert code == 4 and message in one_line(err), case


def test_export_of_a_mistyped_assignment_is_an_error_not_an_empty_list(graded, capsys):
    code, out, err = run_cli(capsys, "export", graded, "--assignment", "lab-9.9.9-tyo")
    assert code == 2 and out == ""
    assert f"unknown lab 'lab-9.9.9-tyo'; did you mean {LAB}?" in one_line(err)


def test_read_commands_never_create_a_database(graded, tmp_path, capsys):
    typo = tmp_path / "course" / ".sparkgrade" / "grade.db"  # the real one is grades.db
    for command in (["export", graded], ["report", graded, LAB], ["feedback", graded, LAB]):
        code, _, err = run_cli(capsys, *command, "--db", f"sqlite:///{typo}")
        assert code == 5 and f"no grade database at {typo}" in one_line(err), command
        assert not typo.exists()
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    code, _, err = run_cli(capsys, "export", fresh)
    assert code == 2 and "no graded submissions in" in one_line(err)
    assert not (fresh / ".sparkgrade").exists()


@pytest.mark.parametrize(("url", "hint"), [
    ("postgres://grader@db/course", "write postgresql+psycopg:// instead of postgres://"),
    ("postgresql+psycopg2://grader@db/course", "write postgresql+psycopg:// instead of postgresql+psycopg2://"),
    ("mysql://grader@db/course", "SQLite or PostgreSQL, not mysql"),
    ("grades.db", "for a SQLite file write sqlite:///"),
    ("sqlite://grades.db", "sqlite:// takes three slashes"),
])
def test_database_urls_get_a_hint_for_the_right_prefix(graded, capsys, url, hint):
    code, _, err = run_cli(capsys, "export", graded, "--db", url)
    assert code == 2 and hint in one_line(err)


def test_a_read_only_course_folder_still_exports_and_grading_it_is_one_line(graded, tmp_path):
    # A read-only bind mount (bubblewrap): read-only even for root, as a course folder on a read-only share is.
    def sandboxed(*argv: str) -> subprocess.CompletedProcess:
        cmd = ["bwrap", "--bind", "/", "/", "--ro-bind", str(graded), str(graded), "--dev", "/dev", "--proc", "/proc",
               sys.executable, "-m", "autograder.cli", *argv]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                               env={**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + str(ROOT / "tests")})

    done = sandboxed("export", str(graded), "--format", "csv")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(LAB) == 9 and "Traceback" not in done.stderr
    done = sandboxed("grade", str(graded), LAB)
    assert done.returncode == 4, done.stderr
    assert "read-only" in one_line(done.stderr) or "must be writable" in one_line(done.stderr)


def test_an_unreachable_scheduler_fails_fast_with_one_line(graded, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed
    code, _, err = run_cli(capsys, "grade", graded, LAB, "--scheduler", f"tcp://127.0.0.1:{port}")
    assert code == 6 and "cannot reach the Dask scheduler" in one_line(err)
    code, _, err = run_cli(capsys, "grade", graded, LAB, "--scheduler", "http://host:8786")
    assert code == 2 and "not a Dask scheduler address" in one_line(err)


@pytest.mark.parametrize(("workers", "message"), [("0", "--workers must be at least 1 (got 0)"),
                                                  ("-3", "--workers must be at least 1 (got -3)"),
                                                  ("two", "--workers takes a whole number of processes, not 'two'")])
def test_workers_must_be_a_positive_whole_number(graded, capsys, workers, message):
    code, _, err = run_cli(capsys, "grade", graded, LAB, "--workers", workers)
    assert code == 2 and message in one_line(err)


def test_a_second_grade_on_the_same_course_refuses_and_names_the_holder(graded, capsys):
    from autograder.course.lock import grading_lock

    with grading_lock(graded):
        code, _, err = run_cli(capsys, "grade", graded, LAB)
    assert code == 7 and f"pid {os.getpid()}" in one_line(err) and "--wait" in err
    # released when the holder is done (or dies: the kernel drops a dead process's flock)
    with grading_lock(graded):
        pass


def test_grade_wait_waits_for_the_holder_says_so_and_then_runs(tmp_path):
    import threading

    from autograder.course.lock import grading_lock

    held, release, heard = threading.Event(), threading.Event(), []

    def holder() -> None:  # another open file description: flock conflicts with it as with another process
        with grading_lock(tmp_path):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    assert held.wait(10)

    def on_wait(message: str) -> None:
        heard.append(message)
        release.set()  # the holder finishes only after the waiter has said it waits

    with grading_lock(tmp_path, wait=True, on_wait=on_wait):
        thread.join(10)  # the holder has released the lock: this block runs only after it
        assert not thread.is_alive()
    assert len(heard) == 1 and "waiting for the other `sparkgrade grade`" in heard[0]
    assert f"pid {os.getpid()}" in heard[0]


def test_ctrl_c_says_stopping_and_what_is_kept(graded, capsys, monkeypatch):
    import autograder.batch

    def interrupted(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        raise AssertionError("SIGINT did not interrupt")

    monkeypatch.setattr(autograder.batch, "grade_course", interrupted)
    code, _, err = run_cli(capsys, "grade", graded, LAB)
    assert code == 130
    assert "stopping grading" in err and "Run the same command again to grade the rest" in err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_full_disk_during_init_is_one_line_exit_4(toy, tmp_path, capsys, monkeypatch):
    import errno

    import autograder.course.create as create

    def full(src, dst, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    shutil.copy2(ROOT / "assignments" / "nbgrader_config.py", toy / "assignments" / "nbgrader_config.py")
    monkeypatch.setattr(create.shutil, "copy2", full)
    code, _, err = run_cli(capsys, "init", tmp_path / "course")
    assert code == 4
    assert one_line(err).endswith("nbgrader_config.py: the disk is full: free some space and run the command again "
                                  "(nothing half-written was kept)")


# -- init never overwrites ------------------------------------------------------------------------------------------


def test_init_again_keeps_the_instructors_edits_and_force_backs_them_up(toy, tmp_path, capsys, tiny_models_cache):
    shutil.copy2(ROOT / "assignments" / "nbgrader_config.py", toy / "assignments" / "nbgrader_config.py")
    course = tmp_path / "course"
    code, out, err = run_cli(capsys, "init", course, "--hardware", "cpu")
    assert code == 0 and (course / "release" / LAB / f"{LAB}.ipynb").is_file()
    settings = course / "sparkgrade.yaml"
    assert "hardware: cpu" in settings.read_text()
    # progress, one line per step when stderr is not a terminal (a spinner that updates itself when it is)
    assert "init: building the tiny offline models" in err and f"init: 1/1 {LAB}: nbgrader generate_assignment" in err
    notebook = course / "source" / LAB / f"{LAB}.ipynb"
    config = course / "nbgrader_config.py"
    notebook.write_text(notebook.read_text().replace("Toy lab", "Toy lab, edited by the instructor"))
    config.write_text(config.read_text() + "\n# the instructor's own setting\n")
    edited = {notebook: notebook.read_bytes(), config: config.read_bytes(), settings: settings.read_bytes()}
    shutil.rmtree(course / "release" / LAB)

    code, out, _ = run_cli(capsys, "init", course, "--hardware", "h200")
    assert code == 0 and {p: p.read_bytes() for p in edited} == edited  # nothing overwritten
    assert f"kept as they were: nbgrader_config.py, sparkgrade.yaml, source/{LAB}" in out and "--force" in out
    assert "sparkgrade.yaml kept as it was, not set to h200" in out
    # what was missing is added again, from the instructor's source
    assert "edited by the instructor" in (course / "release" / LAB / f"{LAB}.ipynb").read_text()

    # an edit of models.yaml changes the lab's models.json: the lab is released again, without --force
    import yaml

    models = yaml.safe_load((course / "models.yaml").read_text())
    models[LAB]["roles"]["moe"] = "/mirror/my-moe"
    (course / "models.yaml").write_text(yaml.safe_dump(models))
    code, out, err = run_cli(capsys, "init", course)
    assert code == 0 and f"init: 1/1 {LAB}: nbgrader generate_assignment" in err
    assert "/mirror/my-moe" in (course / "release" / LAB / "models.json").read_text()
    assert {p: p.read_bytes() for p in edited} == edited

    code, out, _ = run_cli(capsys, "init", course, "--force", "--hardware", "h200")
    assert code == 0 and "the old versions are in" in out and "hardware: h200" in settings.read_text()
    (backup,) = (course / ".sparkgrade" / "backups").iterdir()
    assert (backup / "source" / LAB / f"{LAB}.ipynb").read_bytes() == edited[notebook]
    assert (backup / "nbgrader_config.py").read_bytes() == edited[config]
    assert (backup / "sparkgrade.yaml").read_bytes() == edited[settings]
    assert "edited by the instructor" not in notebook.read_text()
    assert config.read_bytes() == (ROOT / "assignments" / "nbgrader_config.py").read_bytes()
    assert "edited by the instructor" not in (course / "release" / LAB / f"{LAB}.ipynb").read_text()


# -- integrity messages say what happened and what was graded -------------------------------------------------------


def stripped(nb_bytes: bytes):
    import nbformat

    nb = nbformat.reads(nb_bytes.decode(), as_version=4)
    for cell in nb.cells:
        cell.metadata.pop("nbgrader", None)
    return nb


def test_a_notebook_without_nbgrader_metadata_gets_one_clear_flag_and_no_duplicate_ids(toy, tmp_path, capfd):
    import warnings

    import nbformat

    from autograder.intake.notebook import repair_locked_cells

    source = nbformat.reads(notebook_bytes(tmp_path / "source.ipynb").decode(), as_version=4)
    submitted = stripped(notebook_bytes(tmp_path / "s.ipynb"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        repair = repair_locked_cells(submitted, source)
        nbformat.writes(repair.notebook)
    (flag,) = repair.flags
    assert flag.kind == "metadata-stripped"
    assert "your cells ran as you wrote them, after the course's 2 locked cells, which were put back" in flag.message
    ids = [c.id for c in repair.notebook.cells]
    assert len(ids) == len(set(ids)) and not caught
    assert "DuplicateCellId" not in capfd.readouterr().err


def test_a_duplicated_answer_cell_says_the_second_copy_was_graded_and_it_was(toy, tmp_path):
    import copy

    import nbformat
    from toylab import SOLUTION_SOFTMAX

    from autograder.grading import grade_submission, load_lab
    from autograder.intake.submission import Submission

    nb = nbformat.reads(notebook_bytes(tmp_path / "s.ipynb", softmax="def softmax(x):\n    return x").decode(),
                        as_version=4)
    first = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "softmax")
    second = nbformat.v4.new_code_cell(SOLUTION_SOFTMAX, metadata=copy.deepcopy(nb.cells[first].metadata))
    nb.cells.insert(first + 1, second)
    record, _ = grade_submission(Submission("s", LAB, nbformat.writes(nb).encode()), load_lab(None, LAB), "seed")
    (flag,) = [f for f in record.flags if f.kind == "tampered"]
    assert flag.message == (f"cell 'softmax' appears twice (cells {first + 1} and {first + 2}, counting from 1): "
                            "both ran in order, so what the second copy defines is what was graded")
    softmax = [c for c in record.checks if c.function == "softmax"]
    assert all(c.status == "passed" for c in softmax)  # the (correct) second copy is the one graded


# -- one total: autograded + written (formgrader), and whether it is final ------------------------------------------


@pytest.fixture
def written_course(tmp_path, monkeypatch, tiny_models_cache) -> Path:
    """The toy lab with a 2-point written answer, as an nbgrader course (gradebook.db by generate_assignment) in
    which s7's autograded record (3/4) is stored and mirrored into nbgrader's gradebook."""
    from toylab import make_toy_lab, source_cells

    from assignments import nbbuild
    from autograder.course.create import init_course
    from autograder.course.gradebook import sync_record

    root = make_toy_lab(tmp_path / "lab")
    nbbuild.write(root / "assignments" / "source" / LAB / f"{LAB}.ipynb",
                  source_cells(extra=nbbuild.written("q_why", "Why subtract the maximum?", points=2)), title="toy")
    shutil.copy2(ROOT / "assignments" / "nbgrader_config.py", root / "assignments" / "nbgrader_config.py")
    monkeypatch.setenv("SPARKGRADE_RUBRICS", str(root / "rubrics"))
    monkeypatch.setenv("SPARKGRADE_ASSIGNMENTS", str(root / "assignments"))
    course = tmp_path / "course"
    init_course(course)
    with CourseStore(course) as store:
        store.save(record("s7", 3.0), None)
    sync_record(course, record("s7", 3.0))
    return course


def grade_written_answer(course: Path, student: str, points: float) -> None:
    """What formgrader does when the instructor grades the written answer."""
    from nbgrader.api import Gradebook

    from autograder.course.gradebook import gradebook_url

    with Gradebook(gradebook_url(course)) as gb:
        grade = gb.find_grade("q_why", LAB, LAB, student)
        grade.manual_score = points
        grade.needs_manual_grade = False
        gb.db.commit()


def test_one_total_joins_the_written_answers_and_says_when_it_is_final(written_course, capsys):
    code, out, err = run_cli(capsys, "export", written_course)
    (row,) = json.loads(out)
    assert code == 0 and (row["score"], row["max_score"]) == (3.0, 4.0)  # autograded, as before
    assert (row["written_score"], row["written_max_score"], row["total_score"], row["total_max_score"]) == (
        None, 2.0, 3.0, 6.0)
    assert row["final"] is False and row["total_note"].startswith("provisional: 3/4 autograded; 1 written answer")
    assert "1 of 1 total(s) are provisional" in one_line(err)

    grade_written_answer(written_course, "s7", 1.5)
    code, out, err = run_cli(capsys, "export", written_course)
    (row,) = json.loads(out)
    assert (row["written_score"], row["total_score"], row["total_max_score"], row["final"]) == (1.5, 4.5, 6.0, True)
    assert row["total_note"] == "final: 3/4 autograded + 1.5/2 written (graded in formgrader)" and err == ""
    code, out, _ = run_cli(capsys, "export", written_course, "--format", "canvas")
    lines = out.splitlines()
    assert lines[1].endswith(",6.0") and lines[2] == "s7,,s7,,4.5"  # Canvas gets the total, out of 6

    assert run_cli(capsys, "feedback", written_course, LAB)[0] == 0
    page = (written_course / "feedback" / "s7" / LAB / f"{LAB}.html").read_text()
    assert '/ 4 points</span><span class="of">autograded</span>' in page
    assert "<strong>Total 4.5 / 6</strong>" in page and "final: 3/4" in page
    assert run_cli(capsys, "report", written_course, LAB)[0] == 0
    report = (written_course / "reports" / f"{LAB}.html").read_text()
    assert "The written\n    answers (2 points) are graded in formgrader" in report and "1 of 1 are." in report
    for path in (written_course / "feedback" / "s7" / LAB / f"{LAB}.html", written_course / "reports" / f"{LAB}.html"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644  # readable by a web server or a TA account


# -- the student's page: one line per unimplemented function, each reason and integrity note once ------------------


def page_for(rec: GradeRecord) -> str:
    from autograder.feedback.page import BenchmarksView, feedback_context
    from autograder.feedback.render import render
    from autograder.rubric import load_rubric

    return render("feedback.html.j2", **feedback_context(rec, load_rubric(LAB), None, BenchmarksView()))


def checks_of(softmax_messages: tuple[str, str]) -> tuple[CheckResult, ...]:
    return (CheckResult("softmax_rows", "softmax", 0.0, 2.0, "error", softmax_messages[0]),
            CheckResult("softmax_shape", "softmax", 0.0, 1.0, "error", softmax_messages[1]),
            CheckResult("clip_norm_value", "clip_norm", 1.0, 1.0, "passed"))


def test_an_unimplemented_function_is_one_line_not_a_box_per_check(toy):
    import dataclasses

    todo = "softmax raised NotImplementedError: write softmax"
    rec = dataclasses.replace(record("s7"), score=1.0, checks=checks_of((todo, todo)))
    text = page_for(rec)
    assert "<code>softmax</code>: not implemented, 0/3</h3>" in text
    assert 'class="card' not in text and text.count(todo) == 2  # once per row of the "All checks" table only
    # two different failures of one function keep their own boxes: they say different things
    text = page_for(dataclasses.replace(rec, checks=checks_of((todo, "probs differ from the reference"))))
    assert "not implemented, 0/3" not in text and text.count('<article class="card') == 2


def test_an_invalid_notebook_says_why_once_not_once_per_check(toy):
    import dataclasses

    reason = "the file is not a valid Jupyter notebook (Expecting value: line 1 column 1)"
    rec = dataclasses.replace(record("s7"), status="invalid", score=0.0, reason=reason,
                              checks=(*checks_of((reason, reason))[:2],
                                      CheckResult("clip_norm_value", "clip_norm", 0.0, 1.0, "error", reason)))
    text = page_for(rec)
    assert text.count("not a valid Jupyter notebook") == 1 and 'class="card' not in text


def test_integrity_notes_reach_the_student_once_and_instructor_only_flags_do_not(toy):
    import dataclasses

    restored = "locked cell 'setup' was edited: the course's original ran instead of the edited copy"
    rec = dataclasses.replace(record("s7"), flags=(
        Flag("tampered", restored), Flag("tampered", restored),
        Flag("missing-cell", "the answer cell 'clip_norm' is missing from the submission: the grader ran the "
                             "notebook without it"),
        Flag("suspicious-code", "cell 3: replaces torch.testing.assert_close")))
    text = page_for(rec)
    notes = text[text.index('id="integrity"'):]
    notes = notes[:notes.index("</div>")]
    assert notes.count("locked cell &#39;setup&#39; was edited") == 1 and "clip_norm&#39; is missing" in notes
    assert "assert_close" not in text  # for the instructor (class report), not a hint to the student
