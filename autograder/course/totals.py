"""One total per submission, explained: the autograded points (hidden checks), the written answers an instructor
grades in nbgrader's formgrader, and their sum, saying whether it is final.

A lab's visible-test cells carry their function's hidden-check points (autograder.course.gradebook), so nbgrader's
own total (`nbgrader export`) is the same sum: autograded + written. Every other grade cell of the lab's notebook is
a written answer. The written points are read from nbgrader's gradebook.db, read-only, through nbgrader's own
table mappings; a total is final only when every written answer of the submission has been graded there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nbformat

from autograder.records import GradeRecord


@dataclass(frozen=True)
class WrittenScore:
    points: float  # given so far in formgrader
    ungraded: int  # written answers still waiting for a grade


@dataclass(frozen=True)
class Total:
    autograded: float
    autograded_max: float
    written: float | None  # None: no written answer graded yet (or none in the gradebook)
    written_max: float  # 0 when the lab has no written answers
    ungraded: int  # written answers not graded yet
    total: float
    total_max: float
    final: bool

    @property
    def note(self) -> str:
        """One sentence for the pages and exports: what the total holds and whether it can still change."""
        auto = f"{self.autograded:g}/{self.autograded_max:g} autograded"
        if self.written_max == 0:
            return f"final: {auto} (this lab has no written answers)"
        if self.final:
            return f"final: {auto} + {self.written or 0:g}/{self.written_max:g} written (graded in formgrader)"
        waiting = f"{self.ungraded} written answer{'s' * (self.ungraded != 1)}" if self.ungraded else \
            "the written answers"
        return (f"provisional: {auto}; {waiting} ({self.written_max:g} points) not graded in formgrader yet, "
                "so the total can still rise")

    def to_export(self) -> dict[str, object]:
        return {"written_score": self.written, "written_max_score": self.written_max, "total_score": self.total,
                "total_max_score": self.total_max, "final": self.final, "total_note": self.note}


def written_cells(source: nbformat.NotebookNode, functions: set[str]) -> dict[str, float]:
    """{grade_id: points} of the written answers: grade cells that are not a function's visible test."""
    cells = {}
    for cell in source.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {}) or {}
        gid = meta.get("grade_id")
        if not (meta.get("grade") and gid):
            continue
        if gid.startswith("test_") and gid.removeprefix("test_") in functions:
            continue  # a visible-test cell: it carries its function's autograded points
        cells[gid] = float(meta.get("points") or 0)
    return cells


def written_scores(course_dir: Path, lab: str, cells: set[str]) -> dict[str, WrittenScore]:
    """{student: written points so far} from nbgrader's gradebook.db, opened read-only; {} without one."""
    gradebook = Path(course_dir) / "gradebook.db"
    if not cells or not gradebook.is_file():
        return {}
    import sqlite3
    from urllib.parse import quote

    from nbgrader.api import Assignment, Grade, GradeCell, SubmittedAssignment, SubmittedNotebook
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    uri = f"file:{quote(str(gradebook.resolve()))}?mode=ro"
    engine = create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True))
    found: dict[str, list[float]] = {}
    try:
        with Session(engine) as session:
            rows = (session.query(SubmittedAssignment.student_id, GradeCell.name, Grade.manual_score,
                                  Grade.extra_credit, Grade.needs_manual_grade)
                    .select_from(Grade).join(SubmittedNotebook, Grade.notebook_id == SubmittedNotebook.id)
                    .join(SubmittedAssignment, SubmittedNotebook.assignment_id == SubmittedAssignment.id)
                    .join(Assignment, SubmittedAssignment.assignment_id == Assignment.id)
                    .join(GradeCell, Grade.cell_id == GradeCell.id)
                    .filter(Assignment.name == lab, GradeCell.name.in_(sorted(cells))))
            for student, _cell, manual, extra, needs in rows:
                points, ungraded = found.setdefault(student, [0.0, 0])
                graded = manual is not None and not needs
                found[student] = [points + ((manual or 0.0) + (extra or 0.0) if graded else 0.0),
                                  ungraded + (not graded)]
    finally:
        engine.dispose()
    return {s: WrittenScore(p, int(u)) for s, (p, u) in found.items()}


def lab_totals(course_dir: Path, lab: str, records: list[GradeRecord]) -> dict[str, Total]:
    """{student: Total} for the graded submissions of one lab."""
    from autograder.errors import UserError
    from autograder.grading import lab_source_dir
    from autograder.rubric import load_rubric

    try:
        source = nbformat.read(lab_source_dir(Path(course_dir), lab) / f"{lab}.ipynb", as_version=4)
        functions = {spec.function for spec in load_rubric(lab).checks.values()}
    except (UserError, OSError):  # a lab this installation no longer has: only its stored autograded points
        source, functions = nbformat.v4.new_notebook(), set()
    cells = written_cells(source, functions)
    written_max = sum(cells.values())
    scores = written_scores(course_dir, lab, set(cells))
    totals = {}
    for r in records:
        got = scores.get(r.student)
        ungraded = len(cells) if got is None else got.ungraded
        written = None if got is None or got.ungraded == len(cells) else got.points
        totals[r.student] = Total(
            autograded=r.score, autograded_max=r.max_score, written=written, written_max=written_max,
            ungraded=ungraded, total=round(r.score + (written or 0.0), 6), total_max=r.max_score + written_max,
            final=ungraded == 0)
    return totals


def course_totals(course_dir: Path, records: list[GradeRecord]) -> dict[tuple[str, str], Total]:
    """{(lab, student): Total} for records of any labs."""
    out: dict[tuple[str, str], Total] = {}
    for lab in dict.fromkeys(r.assignment for r in records):
        mine = [r for r in records if r.assignment == lab]
        out.update({(lab, s): t for s, t in lab_totals(course_dir, lab, mine).items()})
    return out
