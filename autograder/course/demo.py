"""`sparkgrade demo [DIR]`: the whole product on the embedded defaults (SQLite, local sandboxes, tiny offline models,
CPU). It builds a course, plays a class of sample students for every lab that has a demo class
(assignments/demo/<lab>.yaml: correct, partly wrong, one cheating, one late), grades them, renders the feedback
pages and the class report, and says where to open them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nbformat
import yaml

from autograder.batch import grade_course, shared_workers
from autograder.course.create import init_course
from autograder.course.gradebook import gradebook_url
from autograder.paths import assignments_root
from autograder.records import GradeRecord


def demo_classes() -> dict[str, dict[str, Any]]:
    return {p.stem: yaml.safe_load(p.read_text()) for p in sorted((assignments_root() / "demo").glob("*.yaml"))}


def _solution_cells(notebook: Path) -> dict[str, str]:
    nb = nbformat.read(notebook, as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code"}


def write_submission(course: Path, lab: str, student: str, spec: dict[str, Any], when: datetime) -> Path:
    """What nbgrader's collect leaves: submitted/<student>/<lab>/<lab>.ipynb and timestamp.txt."""
    answers = _solution_cells(course / "source" / lab / f"{lab}.ipynb")
    cells = {name: answers[name] for name in spec.get("source", [])}
    for name, edits in (spec.get("replace") or {}).items():
        for old, new in edits:
            if old not in cells[name]:
                raise ValueError(f"demo class {lab}/{student}: the text to replace in {name} is not in the answer")
            cells[name] = cells[name].replace(old, new)
    cells.update(spec.get("code") or {})
    nb = nbformat.read(course / "release" / lab / f"{lab}.ipynb", as_version=4)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in cells:
            cell.source = cells[gid]
    folder = course / "submitted" / student / lab
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / f"{lab}.ipynb")
    (folder / "timestamp.txt").write_text(when.strftime("%Y-%m-%d %H:%M:%S.%f UTC"))
    return folder


def set_due_date(course: Path, lab: str, due: datetime) -> None:
    from nbgrader.api import Gradebook

    with Gradebook(gradebook_url(course)) as gb:
        gb.update_or_create_assignment(lab, duedate=due.replace(tzinfo=None))


def _since(t0: float) -> str:
    """How far into the demo, for the steps' lines: where its minutes go."""
    return f"at {time.perf_counter() - t0:.0f} s"


@dataclass(frozen=True)
class DemoResult:
    records: dict[str, list[GradeRecord]]  # lab -> graded submissions
    pages: list[tuple[str, Path]]  # (what, where) to open
    seconds: float


def run_demo(course: Path, say: Callable[[str], None] = lambda _: None) -> DemoResult:
    """Build the course, hand in the demo classes, grade them, render the pages; ``say`` hears each step."""
    from autograder.feedback import write_class_report, write_feedback_pages
    from autograder.feedback.overview import write_overview
    from autograder.feedback.report import report_path

    t0 = time.perf_counter()
    classes = demo_classes()
    say(f"1/4 building the course at {course} (labs {', '.join(classes)}; tiny models are built once)")
    init_course(course, list(classes))
    now = datetime.now(UTC)
    due = now - timedelta(hours=1)
    say(f"2/4 a class hands in ({_since(t0)}): " + "; ".join(
        f"{s} ({spec['about']})" for s, spec in next(iter(classes.values()))["students"].items()))
    for lab, klass in classes.items():
        set_due_date(course, lab, due)
        for student, spec in klass["students"].items():
            when = now if spec.get("late") else due - timedelta(hours=2)
            write_submission(course, lab, student, spec, when)
    say(f"3/4 grading: every notebook runs in its own sandbox; hidden checks run outside it ({_since(t0)})")
    results = {}
    with shared_workers():  # one pool for the six labs: workers start (torch, sandbox zygote) once, not per lab
        for lab in classes:
            started = time.perf_counter()
            results[lab] = grade_course(course, lab)
            say(f"    {lab}: {len(results[lab])} submissions in {time.perf_counter() - started:.1f} s")
    say(f"4/4 feedback pages, class reports and the course overview ({_since(t0)})")
    pages: list[tuple[str, Path]] = []
    for lab in classes:
        write_feedback_pages(course, lab)
        write_class_report(course, lab)
        pages.append(("report", report_path(course, lab)))
    pages.insert(0, ("overview", write_overview(course)[0]))
    say(f"    written ({_since(t0)})")
    pages.append(("pages", course / "feedback" / "<student>" / "<lab>" / "<lab>.html"))
    return DemoResult(results, pages, time.perf_counter() - t0)
