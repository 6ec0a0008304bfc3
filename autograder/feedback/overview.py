"""The course overview for instructors (COURSE_DIR/reports/index.html, `sparkgrade overview`): one page across the
labs with every student's score per lab, the missing submissions, the flags to review (tampering, forbidden calls,
suspicious benchmarks and code, sandbox breaches, similar pairs) and links to every lab's class report and every
student's feedback page. Pure function of the stored records, the submitted/ folder and nbgrader's student list."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from autograder.db.store import CourseStore, atomic_write
from autograder.feedback.page import feedback_dir
from autograder.feedback.render import render
from autograder.feedback.report import report_path
from autograder.paths import lab_ids
from autograder.records import GradeRecord

# Flags that are facts to know rather than something to look into.
NOT_FOR_REVIEW = frozenset({"late", "timestamp"})


@dataclass
class Cell:
    """One student's standing in one lab."""

    state: str  # "graded", "error", "timeout", "invalid", "ungraded" (submitted, no grade yet) or "missing"
    score: float | None = None
    max_score: float | None = None
    late: bool = False
    flags: list[str] = field(default_factory=list)  # the kinds to review
    link: str = ""  # the feedback page, relative to the overview


def _link(*parts: str) -> str:
    return "/".join(quote(p, safe="") for p in parts)


def course_labs(course_dir: Path, records: list[GradeRecord]) -> list[str]:
    """The course's labs: those in its source/ folder, else the product's, plus any lab with stored grades."""
    known = lab_ids()
    in_course = [lab for lab in known if (course_dir / "source" / lab).is_dir()]
    return sorted(set(in_course or known) | {r.assignment for r in records})


def _roster(course_dir: Path) -> set[str]:
    """nbgrader's students, when the course has a gradebook: who should have submitted, graded or not."""
    if not (course_dir / "gradebook.db").is_file():
        return set()
    try:
        from nbgrader.api import Gradebook

        from autograder.course.gradebook import gradebook_url

        with Gradebook(gradebook_url(course_dir)) as gb:
            return {s.id for s in gb.students}
    except Exception:  # an unreadable gradebook: the overview still shows everyone who submitted
        return set()


def _submitted(course_dir: Path, lab: str) -> set[str]:
    root = course_dir / "submitted"
    return {p.parent.parent.name for p in root.glob(f"*/{lab}/{lab}.ipynb")} if root.is_dir() else set()


def overview_context(course_dir: Path, records: list[GradeRecord], similar: dict[str, list[Any]],
                     counted: dict[tuple[str, str], GradeRecord] | None = None) -> dict[str, Any]:
    """``similar``: lab -> autograder.similarity pairs at or above the threshold. ``counted``: (lab, student) -> the
    attempt that counts (autograder.course.attempts), whose score the grid shows; the flags to review are the
    latest attempt's and the counted one's."""
    labs = course_labs(course_dir, records)
    by_key = {(r.assignment, r.student): r for r in records}
    submitted = {lab: _submitted(course_dir, lab) for lab in labs}
    students = sorted(_roster(course_dir) | {r.student for r in records} | set().union(*submitted.values()))
    grid: dict[str, dict[str, Cell]] = {}
    review: list[dict[str, Any]] = []
    for student in students:
        row = grid.setdefault(student, {})
        for lab in labs:
            r = by_key.get((lab, student))
            if r is None:
                row[lab] = Cell("ungraded" if student in submitted[lab] else "missing")
                continue
            c = (counted or {}).get((lab, student), r)
            flags = list(dict.fromkeys((*r.flags, *c.flags)))
            kinds = sorted({f.kind for f in flags if f.kind not in NOT_FOR_REVIEW})
            page = feedback_dir(course_dir, student, lab) / f"{lab}.html"
            row[lab] = Cell(c.status, c.score, c.max_score, any(f.kind == "late" for f in c.flags), kinds,
                            "../feedback/" + _link(student, lab, page.name) if page.is_file() else "")
            for f in flags:
                if f.kind not in NOT_FOR_REVIEW:
                    review.append({"lab": lab, "students": [student], "kind": f.kind, "message": f.message})
    for lab in labs:
        for p in similar.get(lab, []):
            review.append({"lab": lab, "students": [p.a, p.b], "kind": "similarity",
                           "message": f"{p.score:.0%} alike (side by side in the class report)"})
            for s in (p.a, p.b):
                if s in grid and "similarity" not in grid[s][lab].flags:
                    grid[s][lab].flags.append("similarity")
    review.sort(key=lambda x: (x["kind"] != "tampered", x["lab"], x["students"], x["kind"]))
    totals = {}
    for student in students:
        got = [c for c in grid[student].values() if c.score is not None]
        totals[student] = (sum(c.score or 0 for c in got), sum(c.max_score or 0 for c in got))
    return {
        "title": "Course overview",
        "course": course_dir.name,
        "labs": labs,
        "students": students,
        "grid": grid,
        "totals": totals,
        "reports": {lab: _link(report_path(course_dir, lab).name) for lab in labs
                    if report_path(course_dir, lab).is_file()},
        "missing": [(s, lab) for s in students for lab in labs if grid[s][lab].state == "missing"],
        "ungraded": [(s, lab) for s in students for lab in labs if grid[s][lab].state == "ungraded"],
        "review": review,
        "graded": {lab: sum(1 for s in students if grid[s][lab].score is not None) for lab in labs},
    }


def overview_path(course_dir: Path) -> Path:
    # Beside the class reports, outside feedback/ (nbgrader's release_feedback hands out every *.html there).
    return Path(course_dir) / "reports" / "index.html"


def write_overview(course_dir: Path, db_url: str | None = None) -> tuple[Path, int, int]:
    """Render the overview; returns (its path, students, labs)."""
    from autograder.course.attempts import counted_records
    from autograder.course.config import load_config
    from autograder.similarity import THRESHOLD, class_similarity

    with CourseStore(course_dir, db_url) as store:
        records = list(store.records())
        counted = {(r.assignment, r.student): r for r in counted_records(store, load_config(course_dir))}
    labs = course_labs(course_dir, records)
    similar = {lab: class_similarity(course_dir, lab, THRESHOLD) for lab in labs if _submitted(course_dir, lab)}
    context = overview_context(course_dir, records, similar, counted)
    path = overview_path(course_dir)
    atomic_write(path, render("overview.html.j2", **context).encode("utf-8"), mode=0o644)  # as the reports
    return path, len(context["students"]), len(labs)
