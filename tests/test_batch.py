"""Batch grading: parallel workers, a real kill -9 mid-batch and a resume, and the same tasks on a Dask cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from toylab import LAB, SOLUTION_SOFTMAX, notebook_bytes

from autograder import cli
from autograder.db.store import CourseStore

pytestmark = pytest.mark.slow

STUDENTS = {f"s{i:02d}": SOLUTION_SOFTMAX if i % 2 == 0 else "def softmax(x):\n    return x" for i in range(6)}


def make_course(root: Path) -> Path:
    course = root / "course"
    (course / "submitted").mkdir(parents=True)
    (course / "nbgrader_config.py").write_text("c = get_config()\n")
    for student, softmax in STUDENTS.items():
        folder = course / "submitted" / student / LAB
        folder.mkdir(parents=True)
        notebook_bytes(folder / f"{LAB}.ipynb", softmax=softmax)
    return course


def expected_score(student: str) -> float:
    return 4.0 if STUDENTS[student] == SOLUTION_SOFTMAX else 1.0


def stored(course: Path) -> dict[str, dict]:
    return {r.student: r.to_dict() for r in CourseStore(course).records(LAB)}


def spy(monkeypatch, name: str) -> list[tuple]:
    """Record the arguments of autograder.batch.<name> (run_local, run_dask) and still run it."""
    from autograder import batch

    calls: list[tuple] = []
    real = getattr(batch, name)

    def wrapper(tasks, where):
        calls.append((len(tasks), where))
        yield from real(tasks, where)

    monkeypatch.setattr(batch, name, wrapper)
    return calls


def test_two_workers_grade_everything_once(toy, tmp_path, monkeypatch):
    course = make_course(tmp_path)
    used = spy(monkeypatch, "run_local")
    assert cli.main(["grade", str(course), LAB, "--workers", "2"]) == 0
    assert used == [(len(STUDENTS), 2)]  # the CLI's --workers reaches the pool
    rows = stored(course)
    assert sorted(rows) == sorted(STUDENTS)
    assert all(rows[s]["score"] == expected_score(s) for s in STUDENTS)


def test_kill_9_mid_batch_then_resume_grades_each_submission_exactly_once(toy, tmp_path):
    course = make_course(tmp_path)
    cmd = [sys.executable, "-m", "autograder.cli", "grade", str(course), LAB, "--workers", "1"]
    proc = subprocess.Popen(cmd, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 240
    while len(stored(course)) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
    first = stored(course)
    assert 2 <= len(first) < len(STUDENTS), "the batch should be killed mid-way"
    os.killpg(proc.pid, signal.SIGKILL)  # the grader, its workers and their sandboxes
    proc.wait()
    assert cli.main(["grade", str(course), LAB]) == 0
    final = stored(course)
    assert sorted(final) == sorted(STUDENTS)  # nothing lost
    for student, row in first.items():  # graded before the kill: kept, not graded again
        assert final[student]["timings"] == row["timings"] and final[student]["seed"] == row["seed"]
    assert all(final[s]["score"] == expected_score(s) for s in STUDENTS)
    assert len(list(CourseStore(course).records(LAB))) == len(STUDENTS)  # nothing duplicated


def test_dask_local_cluster_gives_the_same_grades(toy, tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed", reason="the 'distributed' extra is part of make test's setup")
    course = make_course(tmp_path)
    used = spy(monkeypatch, "run_dask")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc:
        assert cli.main(["grade", str(course), LAB, "--scheduler", lc.scheduler_address]) == 0
        assert used == [(len(STUDENTS), lc.scheduler_address)]  # the tasks went to the cluster
    out = tmp_path / "dask.json"
    assert cli.main(["export", str(course), "-o", str(out)]) == 0
    rows = {r["student"]: r for r in json.loads(out.read_text())}
    assert sorted(rows) == sorted(STUDENTS)
    assert all(rows[s]["score"] == expected_score(s) for s in STUDENTS)
    assert all(r["status"] == "graded" for r in rows.values())
