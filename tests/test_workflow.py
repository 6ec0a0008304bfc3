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


# -- the README's "Run your own course", step by step --------------------------------------------------------------


def readme_steps() -> list[str]:
    """The commands of the README's walkthrough, as "tool subcommand" (the code block under its heading)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Run your own course"):]
    block = section[section.index("```bash") + len("```bash"):]
    block = block[:block.index("```")]
    steps = []
    for line in block.splitlines():
        words = line.split("#")[0].split()
        if words and words[0] in ("sparkgrade", "nbgrader"):
            steps.append(" ".join(words[:3] if words[1] == "db" else words[:2]))
    return steps


def test_the_readme_walkthrough_is_the_cycle_these_tests_run(course_cycle, capsys):
    # The fixture ran init, the due date, release, collect and grade; the rest of the README's steps follow here,
    # in its order: formgrader's grading of the written answers, feedback, release_feedback, report, export.
    assert readme_steps() == ["sparkgrade init", "nbgrader db assignment", "nbgrader release_assignment",
                              "nbgrader collect", "sparkgrade grade", "nbgrader formgrader", "sparkgrade feedback",
                              "nbgrader release_feedback", "sparkgrade report", "sparkgrade export"]
    from nbgrader.api import Gradebook

    from autograder.course.gradebook import gradebook_url

    root, exchange = course_cycle.parent, course_cycle.parent / "exchange"
    with Gradebook(gradebook_url(course_cycle)) as gb:  # formgrader: alice's three written answers, 2 points each
        for cell in ("q_aux_gradient", "q_z_loss", "q_capacity"):
            grade = gb.find_grade(cell, LAB, LAB, "alice")
            grade.manual_score, grade.needs_manual_grade = 2.0, False
        gb.db.commit()
    assert cli.main(["feedback", str(course_cycle), LAB]) == 0
    nbgrader(course_cycle, "release_feedback", LAB, f"--course={COURSE_ID}", exchange=exchange)
    nbgrader(root / "alice", "fetch_feedback", LAB, f"--course={COURSE_ID}", exchange=exchange)
    # Every student here submits as the same OS user, so fetch_feedback hands out both pages: alice's is hers.
    fetched = [p.read_text() for p in (root / "alice" / LAB / "feedback").glob(f"*/{LAB}.html")]
    (alice,) = [text for text in fetched if f"{LAB}: feedback for alice" in text]
    assert "<strong>Total 26 / 29</strong>" in alice  # 20 autograded + 6 written, final
    assert cli.main(["report", str(course_cycle), LAB]) == 0
    assert "1 of 2 are." in (course_cycle / "reports" / f"{LAB}.html").read_text()
    capsys.readouterr()
    assert cli.main(["export", str(course_cycle), "--format", "canvas", "-o", str(course_cycle / "canvas.csv")]) == 0
    assert "1 of 2 total(s) are provisional" in capsys.readouterr().err  # bob's written answers are not graded
    rows = list(csv.reader((course_cycle / "canvas.csv").open()))
    assert rows[1][4] == "29.0" and rows[2][:1] == ["alice"] and rows[2][4] == "26.0"

    # nbgrader's own export has the same totals: autograded + written
    subprocess.run([sys.executable, "-m", "nbgrader", "export", "--log-level=WARN"], cwd=course_cycle, check=True,
                   capture_output=True, timeout=300)
    theirs = {r["student_id"]: r for r in csv.DictReader((course_cycle / "grades.csv").open())
              if r["assignment"] == LAB}
    capsys.readouterr()
    assert cli.main(["export", str(course_cycle), "--assignment", LAB]) == 0
    ours = {r["student"]: r for r in json.loads(capsys.readouterr().out)}
    for student in ("alice", "bob"):
        assert float(theirs[student]["raw_score"]) == pytest.approx(ours[student]["total_score"])
        assert float(theirs[student]["max_score"]) == ours[student]["total_max_score"] == 29
    assert ours["alice"]["final"] is True and ours["bob"]["final"] is False
