"""Grading on submit (`sparkgrade watch`), the whole loop with nbgrader's exchange in a temporary folder: two
students submit, the watch collects, grades and releases; both fetch their feedback; one resubmits and gets the new
page; a restart grades nothing twice; the attempt cap and the pre-due view hold."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder.course.attempts import counted
from autograder.course.create import init_course
from autograder.db.store import CourseStore
from autograder.records import CheckResult, GradeRecord
from autograder.watch import LEDGER, visible, warm_up, watch_once

LAB = "lab-2.4.4-moe-router"
COURSE_ID = "efficient-architectures"
ALL = {"top_k_routing", "load_balancing_loss", "router_z_loss", "load_imbalance"}


def nbgrader(cwd: Path, *args: str, exchange: Path) -> str:
    """nbgrader as the user whose home is ``cwd``: each has their own nbgrader cache, where fetch_feedback looks up
    that user's submissions."""
    cmd = [sys.executable, "-m", "nbgrader", *args, f"--Exchange.root={exchange}",
           f"--Exchange.cache={cwd / '.nbgrader-cache'}", "--log-level=WARN"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def solve(home: Path, course: Path, keep: set[str]) -> None:
    """The course's answers in the cells of ``keep``, the released stubs in the others."""
    def cells(folder: str) -> dict[str, str]:
        return {c.metadata["nbgrader"]["grade_id"]: c.source
                for c in nbformat.read(course / folder / LAB / f"{LAB}.ipynb", as_version=4).cells
                if c.metadata.get("nbgrader", {}).get("solution")}

    source, stubs = cells("source"), cells("release")
    path = home / LAB / f"{LAB}.ipynb"
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in source:
            cell.source = source[gid] if gid in keep else stubs[gid]
    nbformat.write(nb, path)


def submit(root: Path, student: str, keep: set[str]) -> None:
    home = root / student
    solve(home, root / "course", keep)
    nbgrader(home, "submit", LAB, f"--course={COURSE_ID}", f"--CourseDirectory.student_id={student}",
             exchange=root / "exchange")


def fetched(root: Path, student: str) -> list[Path]:
    nbgrader(root / student, "fetch_feedback", LAB, f"--course={COURSE_ID}",
             f"--CourseDirectory.student_id={student}", exchange=root / "exchange")
    return sorted((root / student / LAB / "feedback").glob(f"*/{LAB}.html"))


def attempts(course: Path, student: str) -> int:
    with CourseStore(course) as store:
        return len(store.history(LAB, student))


@pytest.fixture(scope="module")
def loop(tmp_path_factory, tiny_models_cache) -> Path:
    root = tmp_path_factory.mktemp("watch")
    course, exchange = root / "course", root / "exchange"
    exchange.mkdir()
    exchange.chmod(0o777)
    init_course(course, [LAB])
    with (course / "nbgrader_config.py").open("a") as f:  # the course's exchange, as on a JupyterHub
        f.write(f"\nc.Exchange.root = {str(exchange)!r}\nc.Exchange.cache = {str(root / 'cache')!r}\n")
    (course / "sparkgrade.yaml").write_text(f"policies:\n  {LAB}: {{attempts: 2, counts: best}}\n")
    nbgrader(course, "release_assignment", LAB, f"--course={COURSE_ID}", exchange=exchange)
    for student in ("alice", "bob"):
        (root / student).mkdir()
        nbgrader(root / student, "fetch_assignment", LAB, f"--course={COURSE_ID}", exchange=exchange)
    return root


@pytest.mark.slow
def test_submit_grade_release_fetch_resubmit_restart(loop: Path) -> None:
    course = loop / "course"
    # the start's warm-up grades the lab's solution once in this process and stores nothing
    [warmed] = warm_up(course, [LAB])
    assert warmed.kind == "warmed" and "graded the solution once (" in warmed.detail, warmed
    assert attempts(course, "warm-up") == 0 and not (course / "submitted").exists()
    submit(loop, "alice", ALL)
    submit(loop, "bob", {"top_k_routing"})
    events = watch_once(course, [LAB])
    assert sorted((e.kind, e.student) for e in events) == [("released", "alice"), ("released", "bob")], events
    [alice_page] = fetched(loop, "alice")
    [bob_page] = fetched(loop, "bob")
    assert "feedback for alice" in alice_page.read_text() and "feedback for bob" in bob_page.read_text()
    with CourseStore(course) as store:
        alice, bob = store.load(LAB, "alice"), store.load(LAB, "bob")
    assert alice is not None and bob is not None and alice.score == alice.max_score > bob.score

    # bob resubmits, better: his new page is released beside the old one; alice is left alone
    submit(loop, "bob", ALL)
    events = watch_once(course, [LAB])
    assert [(e.kind, e.student) for e in events] == [("released", "bob")], events
    assert len(fetched(loop, "bob")) == 2 and attempts(course, "bob") == 2

    # a restart: nothing new, nothing graded; a release lost in a crash is redone without regrading
    assert watch_once(course, [LAB]) == []
    ledger = json.loads((course / LEDGER).read_text())
    del ledger[LAB]["alice"]
    (course / LEDGER).write_text(json.dumps(ledger))
    assert [(e.kind, e.student) for e in watch_once(course, [LAB])] == [("released", "alice")]
    assert attempts(course, "alice") == 1 and attempts(course, "bob") == 2

    # the policy's two graded attempts are used: a third, new submission is collected, not graded
    # a third, new submission is collected, not graded, and its released page says so: not silence
    submit(loop, "bob", {"top_k_routing", "router_z_loss"})
    assert [(e.kind, e.student) for e in watch_once(course, [LAB])] == [("over-limit", "bob")]
    assert attempts(course, "bob") == 2 and watch_once(course, [LAB]) == []
    pages = [p.read_text() for p in fetched(loop, "bob")]
    [limit] = [p for p in pages if "This submission was not graded" in p]
    assert "allows 2 graded attempts" in limit and "attempt 2 of 2 counts (best)" in limit
    assert sum("attempt 2 of 2 counts (best)" in p for p in pages) == 2  # his second page names it too


def record(score: float) -> GradeRecord:
    check = CheckResult("c", "f", score, 2, "failed" if score < 2 else "passed", "got 3, expected 4",
                        "Misconception: x. Because.", {"loads": [1, 2]})
    return GradeRecord(student="s", assignment=LAB, status="graded", score=score, max_score=2, checks=(check,),
                       flags=(), content_hash=str(score), seed="0", rubric_version="1", sandboxed=True)


def test_the_policy_picks_the_counted_attempt_and_hides_diagnoses_before_the_due_date() -> None:
    from autograder.course.config import AttemptPolicy

    history = [record(1), record(2), record(0)]
    assert counted(history, AttemptPolicy(counts="best")).score == 2
    assert counted(history, AttemptPolicy()).score == 0
    hidden = visible(record(1), AttemptPolicy(before_due="checks"), before_due=True)
    assert hidden.checks[0].status == "failed" and hidden.checks[0].points == 1
    assert hidden.checks[0].message == hidden.checks[0].diagnosis == "" and hidden.checks[0].details == {}
    assert visible(record(1), AttemptPolicy(before_due="checks"), before_due=False) == record(1)
    assert visible(record(1), AttemptPolicy(), before_due=True) == record(1)


def test_a_bad_policy_is_a_one_line_error(tmp_path: Path) -> None:
    from autograder.course.config import load_config
    from autograder.errors import UserError

    (tmp_path / "sparkgrade.yaml").write_text(f"policies:\n  {LAB}: {{attempts: 0, counts: worst}}\n")
    with pytest.raises(UserError, match=r"sparkgrade\.yaml is invalid") as err:
        load_config(tmp_path)
    assert "\n" not in str(err.value)
    good = f"policies:\n  {LAB}: {{attempts: 2, counts: best, before_due: checks}}\n"
    (tmp_path / "sparkgrade.yaml").write_text(good)
    assert load_config(tmp_path).policies[LAB].attempts == 2
