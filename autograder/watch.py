"""Grading on submit (`sparkgrade watch COURSE_DIR [LAB ...]`): beside nbgrader's exchange, unattended.

Each cycle, per lab: nbgrader's own collect (newer submissions replace older ones in submitted/), then every
submission whose content was not yet handled is graded by autograder.batch.grade_course (the workers and sandbox of
`sparkgrade grade`), its feedback page written and released with nbgrader's release_feedback, so the student's
`nbgrader fetch_feedback` (and the JupyterHub assignment list) gets it.

The course's attempt policy (sparkgrade.yaml, ``policies:``, per lab):

    policies:
      lab-2.4.4-moe-router:
        attempts: 3          # graded attempts per student (a later submission is collected, not graded, and
                             # its released page says so); none: no cap
        counts: best         # which graded attempt counts (autograder/course/attempts.py): last (default) or best;
                             # nbgrader's gradebook, the export and the overview get it, every page names it
        before_due: checks   # what the released page shows before the due date: "checks" (which passed, points),
                             # or "full" (default: messages and diagnoses too). Hidden inputs are never shown.

Nothing is lost or graded twice across a restart: submitted/ holds every collected submission, the grade database
every grade, and COURSE_DIR/.sparkgrade/watch.json the content each student's feedback was released for (written
after the release). A submission whose content the database already graded (a release a crash lost, or a student
handing in an earlier attempt again) is released with its stored grade, neither regraded nor counted as a new
attempt; one whose feedback was released is skipped.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autograder.course.attempts import Counted, counted_attempt
from autograder.course.config import AttemptPolicy, load_config
from autograder.db.store import CourseStore, atomic_write
from autograder.errors import UserError
from autograder.intake.submission import find_submissions, read_submission_folder
from autograder.records import GradeRecord

LEDGER = Path(".sparkgrade") / "watch.json"


@dataclass(frozen=True)
class Event:
    """What one cycle did for one submission: "released" (graded or already graded, page released), "over-limit"
    (collected, not graded: the attempts are used), or "error" (a step failed; retried next cycle)."""

    kind: str
    lab: str
    student: str
    detail: str = ""


Say = Callable[[Event], None]


# -- nbgrader's exchange ------------------------------------------------------------------------------------------

def nbgrader_api(course_dir: Path) -> Any:
    """nbgrader's API on the course's own nbgrader_config.py (its exchange root, course id)."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    from autograder.paths import ensure_python_bin_on_path

    ensure_python_bin_on_path()
    config = PyFileConfigLoader("nbgrader_config.py", path=str(course_dir)).load_config()
    config.CourseDirectory.root = str(Path(course_dir).resolve())
    return NbGraderAPI(CourseDirectory(config=config), config=config)


def _ok(result: dict[str, Any], what: str) -> None:
    if not result.get("success"):
        lines = (result.get("error") or result.get("log") or "no output").strip().splitlines()
        raise UserError(f"nbgrader {what} failed: {lines[-1][:300] if lines else 'no output'}")


# -- the ledger of released feedback ------------------------------------------------------------------------------

def _ledger_path(course_dir: Path) -> Path:
    return Path(course_dir) / LEDGER


def load_ledger(course_dir: Path) -> dict[str, dict[str, str]]:
    """lab -> student -> the content hash whose feedback was released last."""
    path = _ledger_path(course_dir)
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        data = {}  # unreadable: everything is re-released (idempotent), nothing regraded (the database knows)
    return {lab: dict(v) for lab, v in data.items() if isinstance(v, dict)}


def _save_ledger(course_dir: Path, ledger: dict[str, dict[str, str]]) -> None:
    atomic_write(_ledger_path(course_dir), json.dumps(ledger, indent=1, sort_keys=True).encode())


# -- the policy ---------------------------------------------------------------------------------------------------

def visible(record: GradeRecord, policy: AttemptPolicy, before_due: bool) -> GradeRecord:
    """The record as the student's page shows it: before the due date with ``before_due: checks``, which checks
    passed and their points only (no messages, diagnoses or plot data)."""
    if not before_due or policy.before_due == "full":
        return record
    checks = tuple(dataclasses.replace(c, message="", diagnosis="", details={}) for c in record.checks)
    return dataclasses.replace(record, checks=checks)


def _due(course_dir: Path, lab: str) -> datetime | None:
    from autograder.course.gradebook import gradebook_url

    if not (Path(course_dir) / "gradebook.db").is_file():
        return None
    from nbgrader.api import Gradebook, MissingEntry

    try:
        with Gradebook(gradebook_url(course_dir)) as gb:
            due = gb.find_assignment(lab).duedate
    except MissingEntry:
        return None
    return None if due is None else due.replace(tzinfo=UTC)


# -- one cycle ----------------------------------------------------------------------------------------------------

def _release(course_dir: Path, api: Any, record: GradeRecord, shown: GradeRecord, lab: str,
             counts: Counted | None) -> None:
    from autograder.course.config import course_rubric
    from autograder.feedback.page import write_feedback

    config = load_config(course_dir)
    rubric = course_rubric(lab, config)
    write_feedback(course_dir, shown, rubric, config.hardware or rubric.hardware, counted=counts)
    _ok(api.release_feedback(lab, record.student), f"release_feedback {lab} --student {record.student}")


def _release_over_limit(course_dir: Path, api: Any, lab: str, student: str, counts: Counted | None) -> None:
    """The page of a submission past the cap (not graded: it says so, the cap, and which attempt counts),
    released like any other, so the student's fetch_feedback gets an answer instead of silence."""
    from autograder.feedback.page import write_limit_page

    write_limit_page(course_dir, lab, student, counts)
    _ok(api.release_feedback(lab, student), f"release_feedback {lab} --student {student}")


def watch_once(course_dir: Path, labs: list[str], *, no_sandbox: bool = False, db_url: str | None = None,
               workers: int | None = None, say: Say | None = None) -> list[Event]:
    """One cycle over ``labs``: collect, grade what is new, release its feedback. Returns what it did."""
    from autograder.batch import grade_course
    from autograder.course.gradebook import sync_record
    from autograder.course.lock import grading_lock

    course_dir = Path(course_dir)
    api = nbgrader_api(course_dir)
    config = load_config(course_dir)
    ledger = load_ledger(course_dir)
    events: list[Event] = []

    def event(e: Event) -> None:
        events.append(e)
        if say is not None:
            say(e)

    for lab in labs:
        _ok(api.collect(lab, update=True), f"collect {lab}")
        policy = config.policies.get(lab, AttemptPolicy())
        released = ledger.setdefault(lab, {})
        with CourseStore(course_dir, db_url) as store:
            pending: dict[str, str] = {}  # student -> content hash to release
            to_grade: list[str] = []
            for student, path in find_submissions(course_dir, lab, None):
                content = read_submission_folder(student, lab, path).content_hash
                if released.get(student) == content:
                    continue
                graded = {a.record.content_hash for a in store.history(lab, student)}
                if content not in graded:
                    if policy.attempts is not None and len(graded) >= policy.attempts:
                        counts = counted_attempt(store, lab, student, policy)
                        try:  # collected, never graded: its page says so
                            _release_over_limit(course_dir, api, lab, student, counts)
                        except Exception as exc:  # retried next cycle
                            event(Event("error", lab, student, f"{type(exc).__name__}: {exc}"[:300]))
                            continue
                        released[student] = content
                        _save_ledger(course_dir, ledger)
                        event(Event("over-limit", lab, student, f"all {policy.attempts} graded attempts used"
                                    + (f"; {counts.note}" if counts is not None else "")))
                        continue
                    to_grade.append(student)
                pending[student] = content
        if not pending:
            _save_ledger(course_dir, ledger)
            continue
        if to_grade:  # holding the course's grade lock: a `sparkgrade grade` running meanwhile is waited for
            # One arrival is graded in this process, whose lab context stays warm from cycle to cycle; a pool of
            # spawned workers (several arrivals) pays an interpreter and torch import first.
            with grading_lock(course_dir, wait=True):
                grade_course(course_dir, lab, to_grade, no_sandbox=no_sandbox, force=True, db_url=db_url,
                             workers=workers or (1 if len(to_grade) == 1 else None))
        due = _due(course_dir, lab)
        before_due = due is not None and datetime.now(UTC) < due
        with CourseStore(course_dir, db_url) as store:
            for student, content in sorted(pending.items()):
                history = [a.record for a in store.history(lab, student)]
                latest = next((r for r in reversed(history) if r.content_hash == content), None)
                counts = counted_attempt(store, lab, student, policy)
                if latest is None or counts is None:
                    event(Event("error", lab, student, "no grade stored for this submission; retried next cycle"))
                    continue
                best = counts.record
                try:
                    if best.content_hash != latest.content_hash and (course_dir / "gradebook.db").is_file():
                        sync_record(course_dir, best)  # the attempt that counts, in nbgrader's gradebook
                    _release(course_dir, api, latest, visible(latest, policy, before_due), lab, counts)
                except Exception as exc:  # one student's failure never stops the others
                    event(Event("error", lab, student, f"{type(exc).__name__}: {exc}"[:300]))
                    continue
                released[student] = content
                _save_ledger(course_dir, ledger)
                event(Event("released", lab, student,
                            f"attempt {counts.attempts}: {latest.score:g}/{latest.max_score:g}"
                            + (f"; {counts.note}: {best.score:g}" if best.content_hash != latest.content_hash
                               else "")))
        _save_ledger(course_dir, ledger)
    return events


def warm_up(course_dir: Path, labs: list[str], *, no_sandbox: bool = False, say: Say | None = None) -> list[Event]:
    """Pay, before the first submission, what the first grading of each lab pays once per process: the lab's
    context (rubric, source, tiny models), the grader's torch and check imports, the sandbox zygote, the checks'
    reference models. It grades the lab's own solution (the course's source notebook) in this process, exactly as
    a single arrival is graded (batch.run_task, whose lab context is cached by the same key), and stores nothing.
    A lab graded on a GPU warms its context only (a GPU sandbox starts cold anyway). A failure is reported, never
    fatal: the first submission then pays what is left."""
    from autograder.batch import GradeTask, run_task
    from autograder.grading import lab_source_dir, load_lab
    from autograder.intake.submission import Submission
    from autograder.sandbox import check_sandbox_available

    events: list[Event] = []
    course_dir = Path(course_dir)
    for lab in labs:
        started = time.monotonic()
        try:
            if not no_sandbox:
                check_sandbox_available()
            ctx = load_lab(course_dir, lab, no_sandbox=no_sandbox)
            if not ctx.needs_gpu:
                notebook = (lab_source_dir(course_dir, lab) / f"{lab}.ipynb").read_bytes()
                task = GradeTask(Submission("warm-up", lab, notebook), "warm-up", str(course_dir.resolve()),
                                 no_sandbox, ctx.hardware, False)
                record = run_task(task).record
                detail = f"graded the solution once ({record.score:g}/{record.max_score:g})"
            else:
                detail = "lab context loaded (GPU sandboxes start cold)"
            e = Event("warmed", lab, "", f"{detail} in {time.monotonic() - started:.1f} s")
        except Exception as exc:  # the watch still runs; the first submission pays the rest
            e = Event("error", lab, "", f"warm-up failed: {type(exc).__name__}: {exc}"[:300])
        events.append(e)
        if say is not None:
            say(e)
    return events


def watch(course_dir: Path, labs: list[str], *, interval: float = 5.0, cycles: int | None = None,
          no_sandbox: bool = False, db_url: str | None = None, workers: int | None = None,
          say: Say | None = None) -> int:
    """Cycle every ``interval`` seconds (``cycles`` times, or until interrupted); returns the cycles run."""
    done = 0
    while cycles is None or done < cycles:
        started = time.monotonic()
        watch_once(course_dir, labs, no_sandbox=no_sandbox, db_url=db_url, workers=workers, say=say)
        done += 1
        if cycles is None or done < cycles:
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
    return done
