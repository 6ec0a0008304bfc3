"""Put our grades into nbgrader's gradebook, so formgrader shows the autograded scores next to the written answers
the instructor grades there, and `nbgrader export` agrees with `sparkgrade export`.

nbgrader's own autograde scores a visible-test cell by running it in the student's kernel; we never do. Instead a
visible-test cell with grade_id ``test_<function>`` gets the points the hidden checks of ``<function>`` earned
(docs/contracts.md, "The gradebook": a visible-test cell carries its function's points so formgrader shows them).
Written-answer cells stay for manual grading. The submission's timestamp comes from nbgrader's own timestamp.txt,
so nbgrader's late submission handling sees what it would have seen.
"""

from __future__ import annotations

import os
import re
import warnings
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

from autograder.paths import ensure_python_bin_on_path
from autograder.records import GradeRecord


def gradebook_url(course_dir: Path) -> str:
    ensure_python_bin_on_path()
    return f"sqlite:///{(Path(course_dir) / 'gradebook.db').resolve()}"


class BadTimestamp(ValueError):
    """The submission's timestamp.txt cannot be read as a date; the message is one line for the instructor."""


# What nbgrader writes ("%Y-%m-%d %H:%M:%S.%f %Z", e.g. "2026-11-30 12:00:00.123456 UTC") and ISO 8601. The time zone
# is a bare name or offset: parse_utc hands a third word to dateutil.tz.gettz, which opens a file by that name, so a
# path ("/etc/shadow", "../x") never reaches it.
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?"
                        r"( ?([A-Za-z][A-Za-z0-9_]{0,15}|[+-]\d{2}:?\d{2}))?")
MAX_TIMESTAMP_BYTES = 256


def read_timestamp(course_dir: Path, lab: str, student: str) -> datetime | None:
    """The collected timestamp.txt as naive UTC (nbgrader's convention); None when there is none. The student made
    this folder: the file is read without following links and capped in bytes (codec.read_bounded), and anything
    but a plain date raises BadTimestamp."""
    from nbgrader.utils import parse_utc

    from autograder.sandbox.codec import OutputError, open_dir, read_bounded

    folder = Path(course_dir) / "submitted" / student / lab
    try:
        dir_fd = open_dir(str(folder))
    except OSError:
        return None  # no folder to read (the submission's own reading says what is wrong)
    try:
        data = read_bounded(dir_fd, "timestamp.txt", MAX_TIMESTAMP_BYTES)
    except OutputError as exc:
        raise BadTimestamp(f"timestamp.txt is not usable: {exc}") from None
    finally:
        os.close(dir_fd)
    if data is None:
        return None
    text = data.decode("utf-8", errors="replace").strip()
    if not _TIMESTAMP.fullmatch(text):
        raise BadTimestamp(f"timestamp.txt does not hold a date ({text[:40]!r})")
    try:
        stamp: datetime = parse_utc(text)
        return stamp
    except (ValueError, OverflowError, TypeError) as exc:
        raise BadTimestamp(f"timestamp.txt does not hold a valid date ({text[:40]!r}: {exc})") from None


def function_points(record: GradeRecord) -> tuple[dict[str, float], dict[str, float]]:
    earned: dict[str, float] = defaultdict(float)
    possible: dict[str, float] = defaultdict(float)
    for c in record.checks:
        earned[c.function] += c.points
        possible[c.function] += c.max_points
    return earned, possible


class GradebookSession:
    """nbgrader's gradebook opened once for many records (a batch): opening it costs more than a record's sync
    (SQLAlchemy engine, table inspection, create_all: ~0.2 s a time on 2 cores, twice per record before). Each
    record is committed on its own, so formgrader sees it at once and a failed record costs no other; the lab's
    due date is read once. Opened lazily, and not at all when the course has no gradebook.db."""

    def __init__(self, course_dir: Path) -> None:
        self.course_dir = Path(course_dir)
        self._gb: Any = None
        self._due: dict[str, datetime | None] = {}
        self._missing: set[str] = set()  # labs that are no nbgrader assignment of this course

    @property
    def exists(self) -> bool:
        return (self.course_dir / "gradebook.db").exists()

    def _open(self) -> Any:
        if self._gb is None:
            from nbgrader.api import Gradebook

            self._gb = Gradebook(gradebook_url(self.course_dir))
        return self._gb

    def close(self) -> None:
        if self._gb is not None:
            self._gb.close()
            self._gb = None

    def __enter__(self) -> GradebookSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _assignment_due(self, lab: str) -> tuple[bool, datetime | None]:
        """(is an nbgrader assignment of this course, its due date)."""
        from nbgrader.api import MissingEntry

        if lab in self._missing:
            return False, None
        if lab not in self._due:
            try:
                self._due[lab] = self._open().find_assignment(lab).duedate
            except MissingEntry:
                self._missing.add(lab)
                return False, None
        return True, self._due[lab]

    def seconds_late(self, lab: str, student: str) -> float:
        """How late nbgrader considers this submission (its due date vs the collected timestamp.txt); 0 if on time.
        Raises BadTimestamp when the timestamp cannot be read as a date."""
        if not self.exists:
            return 0.0
        stamp = read_timestamp(self.course_dir, lab, student)
        if stamp is None:
            return 0.0
        _, due = self._assignment_due(lab)
        if due is None:
            return 0.0
        return max(float((stamp - due).total_seconds()), 0.0)

    def sync(self, record: GradeRecord) -> None:
        """Create or update the student's submission in nbgrader's gradebook with the autograded scores."""
        lab, student = record.assignment, record.student
        try:
            stamp = read_timestamp(self.course_dir, lab, student)
        except BadTimestamp:
            stamp = None  # the batch flags it on the record; nbgrader keeps the time it has
        kwargs = {"timestamp": stamp} if stamp is not None else {}
        earned, possible = function_points(record)
        with warnings.catch_warnings():
            # nbgrader's own add_submission trips a harmless SQLAlchemy autoflush warning; keep the console clean.
            warnings.simplefilter("ignore", category=Warning)
            known, _ = self._assignment_due(lab)
            if not known:
                return  # not an nbgrader assignment of this course (e.g. a test lab): nothing to mirror
            gb = self._open()
            try:
                gb.update_or_create_student(student)
                gb.update_or_create_submission(lab, student, **kwargs)
                notebook = gb.find_submission_notebook(lab, lab, student)
                for grade in notebook.grades:
                    name = grade.cell.name
                    function = name.removeprefix("test_")
                    if not name.startswith("test_") or function not in possible:
                        continue  # a written answer: the instructor grades it in formgrader
                    cell_max = float(grade.max_score)
                    share = earned[function] / possible[function] if possible[function] else 0.0
                    grade.auto_score = round(share * cell_max, 6)
                    grade.needs_manual_grade = False
                gb.db.commit()
            except BaseException:
                gb.db.rollback()  # the session stays usable for the next record
                raise


def sync_record(course_dir: Path, record: GradeRecord) -> None:
    """Create or update the student's submission in nbgrader's gradebook with the autograded scores (one record:
    a batch keeps a GradebookSession open instead)."""
    with GradebookSession(course_dir) as session:
        session.sync(record)


def seconds_late(course_dir: Path, lab: str, student: str) -> float:
    """How late nbgrader considers this submission (its due date vs the collected timestamp.txt); 0 if on time.
    Raises BadTimestamp when the timestamp cannot be read as a date."""
    with GradebookSession(course_dir) as session:
        return session.seconds_late(lab, student)
