"""An instructor and two students through nbgrader's whole cycle, with the exchange in a temporary folder:
init -> release -> fetch -> (edit) -> submit (one late) -> collect -> sparkgrade grade -> nbgrader's gradebook and
`nbgrader export` agree with `sparkgrade export`."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import nbformat
import pytest

from autograder import cli
from autograder.course.create import init_course

LAB = "lab-2.4.4-moe-router"
COURSE_ID = "efficient-architectures"

pytestmark = pytest.mark.slow


def nbgrader(cwd: Path, *args: str, exchange: Path) -> str:
    cmd = [sys.executable, "-m", "nbgrader", *args, f"--Exchange.root={exchange}", "--log-level=WARN"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def solve(release_nb: Path, source_nb: Path, keep: set[str]) -> None:
    """A student's work: the source's answers for the functions in ``keep``, the stubs elsewhere."""
    source = {c.metadata["nbgrader"]["grade_id"]: c for c in nbformat.read(source_nb, as_version=4).cells
              if c.metadata.get("nbgrader", {}).get("solution")}
    nb = nbformat.read(release_nb, as_version=4)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in keep:
            cell.source = source[gid].source
    nbformat.write(nb, release_nb)


@pytest.fixture(scope="module")
def course_cycle(tmp_path_factory, tiny_models_cache):
    root = tmp_path_factory.mktemp("cycle")
    course, exchange = root / "course", root / "exchange"
    exchange.mkdir()
    exchange.chmod(0o777)
    init_course(course, [LAB])
    nbgrader(course, "release_assignment", LAB, f"--course={COURSE_ID}", exchange=exchange)
    students = {"alice": {"top_k_routing", "load_balancing_loss", "router_z_loss", "load_imbalance"},
                "bob": {"top_k_routing", "router_z_loss"}}
    for student, keep in students.items():
        home = root / student
        home.mkdir()
        nbgrader(home, "fetch_assignment", LAB, f"--course={COURSE_ID}", exchange=exchange)
        solve(home / LAB / f"{LAB}.ipynb", course / "source" / LAB / f"{LAB}.ipynb", keep)
        if student == "bob":  # the due date passes between the two submissions: bob is late
            due = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
            nbgrader(course, "db", "assignment", "add", LAB, f"--duedate={due}", exchange=exchange)
            time.sleep(1.5)
        nbgrader(home, "submit", LAB, f"--course={COURSE_ID}", f"--CourseDirectory.student_id={student}",
                 exchange=exchange)
    nbgrader(course, "collect", LAB, f"--course={COURSE_ID}", exchange=exchange)
    assert cli.main(["grade", str(course), LAB]) == 0
    return course


def test_collected_submissions_are_graded_from_hidden_checks(course_cycle):
    out = course_cycle / "grades.json"
    assert cli.main(["export", str(course_cycle), "--format", "json", "-o", str(out)]) == 0
    rows = {r["student"]: r for r in json.loads(out.read_text())}
    assert rows["alice"]["score"] == rows["alice"]["max_score"] == 20
    bob = rows["bob"]
    by_function: dict[str, float] = {}
    for c in bob["checks"]:
        by_function[c["function"]] = by_function.get(c["function"], 0) + c["points"]
    assert by_function["top_k_routing"] == 7 and by_function["router_z_loss"] == 3
    assert by_function["load_balancing_loss"] == 0 and by_function["load_imbalance"] == 0
    assert any(f["kind"] == "late" for f in bob["flags"])
    assert not any(f["kind"] == "late" for f in rows["alice"]["flags"])


def test_nbgrader_export_agrees_with_ours(course_cycle):
    subprocess.run([sys.executable, "-m", "nbgrader", "export", "--log-level=WARN"], cwd=course_cycle, check=True,
                   capture_output=True, timeout=300)
    theirs = {r["student_id"]: r for r in csv.DictReader((course_cycle / "grades.csv").open())
              if r["assignment"] == LAB}
    ours = {r["student"]: r for r in json.loads(
        subprocess.run([sys.executable, "-m", "autograder.cli", "export", str(course_cycle)], capture_output=True,
                       text=True, check=True).stdout)}
    for student in ("alice", "bob"):
        # nbgrader's score = our autograded points + the written answers (not yet graded by hand: 0)
        assert float(theirs[student]["raw_score"]) == pytest.approx(ours[student]["score"])
        assert float(theirs[student]["max_score"]) == ours[student]["max_score"] + 9  # three written answers
    assert theirs["bob"]["timestamp"] > theirs["bob"]["duedate"]
    assert theirs["alice"]["timestamp"] < theirs["alice"]["duedate"]


def test_formgrader_has_the_autograded_notebooks(course_cycle):
    for student in ("alice", "bob"):
        nb = course_cycle / "autograded" / student / LAB / f"{LAB}.ipynb"
        assert nb.is_file() and nbformat.read(nb, as_version=4).cells
    assert Path(course_cycle / "release" / LAB / f"{LAB}.ipynb").is_file()
