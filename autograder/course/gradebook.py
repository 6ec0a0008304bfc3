"""Put our grades into nbgrader's gradebook, so formgrader shows the autograded scores next to the written answers
the instructor grades there, and `nbgrader export` agrees with `sparkgrade export`.

nbgrader's own autograde scores a visible-test cell by running it in the student's kernel; we never do. Instead a
visible-test cell with grade_id ``test_<function>`` gets the points the hidden checks of ``<function>`` earned
(DESIGN.md: a visible-test cell may carry its function's points so formgrader shows them). Written-answer cells
stay for manual grading. The submission's timestamp comes from nbgrader's own timestamp.txt, so nbgrader's late
submission handling sees what it would have seen.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from pathlib import Path

from autograder.paths import ensure_python_bin_on_path
from autograder.records import GradeRecord


def gradebook_url(course_dir: Path) -> str:
    ensure_python_bin_on_path()
    return f"sqlite:///{(Path(course_dir) / 'gradebook.db').resolve()}"


def function_points(record: GradeRecord) -> tuple[dict[str, float], dict[str, float]]:
    earned: dict[str, float] = defaultdict(float)
    possible: dict[str, float] = defaultdict(float)
    for c in record.checks:
        earned[c.function] += c.points
        possible[c.function] += c.max_points
    return earned, possible


def sync_record(course_dir: Path, record: GradeRecord) -> None:
    """Create or update the student's submission in nbgrader's gradebook with the autograded scores."""
    from nbgrader.api import Gradebook, MissingEntry

    lab, student = record.assignment, record.student
    stamp_file = Path(course_dir) / "submitted" / student / lab / "timestamp.txt"
    kwargs = {"timestamp": stamp_file.read_text().strip()} if stamp_file.is_file() else {}
    earned, possible = function_points(record)
    with warnings.catch_warnings(), Gradebook(gradebook_url(course_dir)) as gb:
        # nbgrader's own add_submission trips a harmless SQLAlchemy autoflush warning; keep the console clean.
        warnings.simplefilter("ignore", category=Warning)
        try:
            gb.find_assignment(lab)
        except MissingEntry:
            return  # not an nbgrader assignment of this course (e.g. a test lab): nothing to mirror
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


def seconds_late(course_dir: Path, lab: str, student: str) -> float:
    """How late nbgrader considers this submission (its due date vs the collected timestamp.txt); 0 if on time."""
    from nbgrader.api import Gradebook, MissingEntry
    from nbgrader.utils import parse_utc

    stamp_file = Path(course_dir) / "submitted" / student / lab / "timestamp.txt"
    if not stamp_file.is_file() or not (Path(course_dir) / "gradebook.db").exists():
        return 0.0
    with Gradebook(gradebook_url(course_dir)) as gb:
        try:
            due = gb.find_assignment(lab).duedate
        except MissingEntry:
            return 0.0
    if due is None:
        return 0.0
    late = float((parse_utc(stamp_file.read_text().strip()) - due).total_seconds())
    return max(late, 0.0)
