"""Feedback pages for learners and the class report for instructors, rendered with Jinja from stored GradeRecords.

    sparkgrade feedback COURSE_DIR LAB  -> COURSE_DIR/feedback/<student>/<LAB>/<LAB>.html (nbgrader's place and name,
                                         so `nbgrader release_feedback` hands it out)
    sparkgrade report COURSE_DIR LAB    -> COURSE_DIR/reports/<LAB>.html (instructors only)

Every page is one self-contained HTML file: inline stylesheet, figures as PNG data: URIs, no script, and a
Content-Security-Policy that would block one anyway. Student text (outputs, messages, names) is escaped by Jinja's
autoescape; student images are re-encoded only after their bytes are verified (autograder.feedback.notebook).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from autograder.course.config import course_rubric, load_config
from autograder.course.totals import lab_totals
from autograder.db.store import CourseStore
from autograder.errors import UserError
from autograder.feedback.page import write_feedback
from autograder.feedback.report import write_report
from autograder.paths import check_lab
from autograder.records import GradeRecord

__all__ = ["write_class_report", "write_feedback", "write_feedback_pages", "write_report"]


def _safe_name(student: str) -> bool:
    """A student id that is one plain path component (ids come from folder names a student may influence)."""
    return bool(student) and student not in (".", "..") and "/" not in student and "\\" not in student \
        and "\0" not in student


def _records(course_dir: Path, lab: str, db_url: str | None = None) -> list[GradeRecord]:
    if not course_dir.is_dir():
        raise UserError(f"{course_dir}: no such course folder")
    check_lab(lab)
    with CourseStore(course_dir, db_url, readonly=True) as store:  # a read: never creates a database
        records = list(store.records(lab))
    if not records:
        raise UserError(f"no graded submissions of {lab} in {course_dir}: run `sparkgrade grade {course_dir} {lab}` "
                        "first")
    return records


def write_feedback_pages(course_dir: Path, lab: str, db_url: str | None = None,
                         on_page: Callable[[str, int, int], None] | None = None) -> tuple[int, list[str]]:
    """One page per graded submission of ``lab`` (the student's latest attempt, naming the attempt that counts under
    the lab's policy and scoring the total with it); returns (pages written, student ids skipped as unusable).
    ``on_page`` hears (student, done, total) after each page, for the CLI's progress bar."""
    from autograder.course.attempts import counted_attempts

    records = _records(course_dir, lab, db_url)
    config = load_config(course_dir)
    rubric = course_rubric(lab, config)  # the rubric the records were graded with, GPU checks included
    hardware = config.hardware or rubric.hardware  # the limits the grader judged by
    with CourseStore(course_dir, db_url, readonly=True) as store:
        counts = counted_attempts(store, config, lab)
    totals = lab_totals(course_dir, lab, [c.record for c in counts.values()])
    written, skipped = 0, []
    for record in records:
        if not _safe_name(record.student):
            skipped.append(record.student)
            continue
        write_feedback(course_dir, record, rubric, hardware, totals.get(record.student),
                       counts.get((lab, record.student)))
        written += 1
        if on_page is not None:
            on_page(record.student, written + len(skipped), len(records))
    return written, skipped


def write_class_report(course_dir: Path, lab: str, db_url: str | None = None) -> tuple[Path, int]:
    """The class page of ``lab`` for instructors; returns (its path, the number of submissions on it)."""
    from autograder.similarity import THRESHOLD, class_similarity

    records = _records(course_dir, lab, db_url)
    totals = lab_totals(course_dir, lab, records)
    similar = class_similarity(course_dir, lab, THRESHOLD)
    return write_report(course_dir, records, course_rubric(lab, load_config(course_dir)), totals, similar,
                        THRESHOLD), len(records)
