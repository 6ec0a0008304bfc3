"""One feedback page per graded submission: the view data (pure functions of a GradeRecord and untrusted bytes)
and the file it goes to, where nbgrader's release_feedback finds it: feedback/<student>/<lab>/<lab>.html."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autograder.checks.diagnosis import NO_MATCH
from autograder.course.attempts import Counted
from autograder.course.totals import Total
from autograder.db.store import atomic_write
from autograder.feedback import figures
from autograder.feedback.figures import Figure
from autograder.feedback.notebook import NotebookView, clean_text, notebook_view
from autograder.feedback.render import render
from autograder.plausibility import (
    DECODE_DEFINITION,
    MEMORY_DEFINITION,
    TTFT_DEFINITION,
    InferenceRecord,
    TrainRecord,
    Verdict,
    check_benchmarks,
    parse_records,
)
from autograder.records import CheckResult, GradeRecord
from autograder.rubric import Rubric

MAX_BENCHMARKS_BYTES = 2_000_000
MISCONCEPTION_PREFIX = "Looks like: "  # autograder.checks.diagnosis.diagnose's wording for a matched misconception
# nbgrader's release_feedback reads these two files beside the page (written by its submit, kept by collect).
NBGRADER_FILES = ("timestamp.txt", "submission_secret.txt")
_SCHEMA_FIELDS = set(InferenceRecord.model_fields) | set(TrainRecord.model_fields)

STATUS_NOTES = {
    "invalid": "Your submission could not be graded",
    "timeout": "Your notebook ran out of time",
    "error": "Grading stopped with an error",
}


@dataclass(frozen=True)
class CheckView:
    id: str
    title: str
    function: str
    points: float
    max_points: float
    status: str
    message: str
    misconception: str = ""  # the named mistake, when diagnosis matched one
    explanation: str = ""  # what the misconception means (or the diagnosis sentence when none matched)
    figures: tuple[Figure, ...] = ()


@dataclass(frozen=True)
class FunctionGroup:
    function: str
    failed: tuple[CheckView, ...]
    total: int
    # One line instead of a box per check, when every check of the function failed for the same reason
    # ("load_balancing_loss: not implemented, 0/8"); empty when the boxes say different things.
    summary: str = ""


# Flags a learner is told about (what the grader changed or noticed about the submission itself). The others
# (suspicious code or numbers, grader errors) are for instructors: the class report shows them.
STUDENT_FLAG_KINDS = ("metadata-stripped", "tampered", "missing-cell", "late")


def function_group(function: str, mine: list[CheckView]) -> FunctionGroup | None:
    """The failed checks of one function, summarised in one line when they all failed for the same reason."""
    failed = tuple(c for c in mine if c.status != "passed")
    if not failed:
        return None
    messages = {c.message for c in failed}
    if len(failed) == len(mine) and len(messages) == 1 and not any(c.misconception or c.figures for c in failed):
        (message,) = messages
        if "NotImplementedError" in message:
            why = "not implemented"
        elif "is not a function defined in the notebook" in message:
            why = "not defined in your notebook (the hidden checks could not find it)"
        else:
            why = message
        points = sum(c.points for c in mine)
        possible = sum(c.max_points for c in mine)
        return FunctionGroup(function, failed, len(mine), f"{why}, {points:g}/{possible:g}")
    return FunctionGroup(function, failed, len(mine))


# What each judged benchmark field means (the checker's messages quote the one a number broke).
FIELD_DEFINITIONS = (("ttft_s", TTFT_DEFINITION), ("decode_tok_s", DECODE_DEFINITION),
                     ("peak_mem_bytes", MEMORY_DEFINITION))


@dataclass
class BenchmarksView:
    present: bool = False
    problem: str = ""
    records: int = 0
    hardware: str = ""
    verdicts: list[Verdict] = field(default_factory=list)
    roofline: Figure | None = None
    definitions: tuple[tuple[str, str], ...] = FIELD_DEFINITIONS


def split_diagnosis(diagnosis: str) -> tuple[str, str]:
    """("name", "explanation") for "Looks like: <name>. <explanation>", else ("", the whole sentence)."""
    if diagnosis.startswith(MISCONCEPTION_PREFIX):
        name, _, explanation = diagnosis[len(MISCONCEPTION_PREFIX):].partition(". ")
        return name.rstrip("."), explanation
    return "", diagnosis


def check_figures(check: CheckResult) -> tuple[Figure, ...]:
    """Figures from the numbers a failed check kept for feedback (the registry in autograder.feedback.figures)."""
    return figures.check_figures(check.details if isinstance(check.details, dict) else {})


def check_view(check: CheckResult, rubric: Rubric) -> CheckView:
    spec = rubric.checks.get(check.id)
    name, explanation = split_diagnosis(check.diagnosis or "")
    if not name and explanation.startswith(NO_MATCH):
        explanation = "No common mistake we know of matches your output" + explanation[len(NO_MATCH):]
    return CheckView(check.id, spec.title if spec and spec.title else check.id, check.function, check.points,
                     check.max_points, check.status, check.message, name, explanation,
                     check_figures(check) if check.status != "passed" else ())


def _read_bounded(path: Path, limit: int) -> bytes | None:
    """The file's bytes if it is a regular file (not a link) within limit; None otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # a FIFO or device would block or never end
            return None
        data = f.read(limit + 1)
    return data if len(data) <= limit else None


def benchmarks_view(path: Path, hardware: str, stored: Sequence[Verdict] | None = None) -> BenchmarksView:
    """Plausibility verdicts and the roofline of a submitted benchmarks.json (untrusted), or why there are none.

    ``stored``: the verdicts grading judged and stored with the grade record; they are shown as they are (the page
    says what was graded). Without them (a record graded before verdicts were stored) the file is judged here."""
    if not path.exists() and not path.is_symlink():
        return BenchmarksView()
    view = BenchmarksView(present=True, hardware=hardware)
    raw = _read_bounded(path, MAX_BENCHMARKS_BYTES)
    if raw is None:
        view.problem = "benchmarks.json is not a regular file or is too large to read."
        return view
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        view.problem = f"benchmarks.json is not valid JSON ({clean_text(str(exc), 200)})."
        return view
    if isinstance(data, list):  # a lab may record extra fields beside the plausibility schema: judge the rest
        data = [{k: v for k, v in r.items() if k in _SCHEMA_FIELDS} if isinstance(r, dict) else r for r in data]
    try:
        records = parse_records(data)
        view.records = len(records)
        view.verdicts = list(stored) if stored is not None else check_benchmarks(records, hardware)
    except Exception as exc:  # off-schema numbers: the check already graded them; say what is wrong
        view.problem = clean_text(str(exc), 400)
        return view
    if any(isinstance(r, InferenceRecord) for r in records):
        try:
            view.roofline = Figure(
                figures.data_uri(figures.roofline_png(records, hardware)),
                "Roofline of your benchmark numbers",
                "Each point is one of your measurements (the number is its record in benchmarks.json): circles are "
                "decode, triangles prefill. The black line is the most the hardware can do at that arithmetic "
                "intensity; a point above it is physically impossible.")
        except Exception:  # hostile numbers can break a log-scale plot; the verdicts still stand
            view.problem = "The roofline could not be drawn from these numbers."
    return view


def feedback_context(record: GradeRecord, rubric: Rubric, notebook: bytes | None,
                     benchmarks: BenchmarksView, total: Total | None = None,
                     counted: Counted | None = None) -> dict[str, Any]:
    """``counted``: the student's attempt that counts (autograder.course.attempts); the page names it, and its score
    when it is not this page's attempt, once there is more than one graded attempt or a cap."""
    checks = [check_view(c, rubric) for c in record.checks]
    # A submission that could not run says why once, in the callout: its checks all carry that same reason.
    said_once = record.status != "graded" and {c.message for c in checks} <= {record.reason}
    groups: list[FunctionGroup] = []
    if not said_once:
        for function in dict.fromkeys(c.function for c in checks):
            group = function_group(function, [c for c in checks if c.function == function])
            if group is not None:
                groups.append(group)
    integrity = list(dict.fromkeys(f.message for f in record.flags if f.kind in STUDENT_FLAG_KINDS))
    nb: NotebookView = notebook_view(notebook)
    pct = 100.0 * record.score / record.max_score if record.max_score > 0 else 0.0
    return {
        "title": f"{record.assignment}: feedback for {record.student}",
        "record": record,
        "lab": record.assignment,
        "pct": max(0.0, min(100.0, pct)),
        "checks": checks,
        "passed": sum(c.status == "passed" for c in checks),
        "groups": groups,
        "status_note": STATUS_NOTES.get(record.status, ""),
        "forbidden": [f for f in record.flags if f.kind == "forbidden-call"],  # rubric `forbid:`, seen inside
        "said_once": said_once,
        "integrity": integrity,
        "total": total,
        "benchmarks": benchmarks,
        "notebook": nb,
        "notebook_s": record.timings.get("notebook_s"),
        "counts": counted if counted is not None and (counted.attempts > 1 or counted.limit) else None,
        "this_attempt": counted.number_of(record) if counted is not None else None,
    }


def feedback_dir(course_dir: Path, student: str, lab: str) -> Path:
    return Path(course_dir) / "feedback" / student / lab


def write_feedback(course_dir: Path, record: GradeRecord, rubric: Rubric, hardware: str,
                   total: Total | None = None, counted: Counted | None = None) -> Path:
    """Render one submission's page to feedback/<student>/<lab>/<lab>.html (nbgrader's name) and return it."""
    course_dir = Path(course_dir)
    lab, student = record.assignment, record.student
    nb_path = course_dir / "autograded" / student / lab / f"{lab}.ipynb"
    notebook = nb_path.read_bytes() if nb_path.is_file() else None
    submitted = course_dir / "submitted" / student / lab
    bench = benchmarks_view(submitted / "benchmarks.json", hardware, record.verdicts)
    html = render("feedback.html.j2", **feedback_context(record, rubric, notebook, bench, total, counted))
    return _write_page(course_dir, student, lab, html)


def write_limit_page(course_dir: Path, lab: str, student: str, counted: Counted | None) -> Path:
    """The page of a submission past its lab's cap on graded attempts (autograder/watch.py): not graded, the cap,
    and which attempt counts with its score. Same place and name as a feedback page, for release_feedback."""
    limit = counted.limit if counted is not None else None
    html = render("attempt_limit.html.j2", title=f"{lab}: submission not graded", lab=lab, student=student,
                  counts=counted, limit=limit)
    return _write_page(course_dir, student, lab, html)


def _write_page(course_dir: Path, student: str, lab: str, html: str) -> Path:
    """feedback/<student>/<lab>/<lab>.html, with nbgrader's timestamp and secret of the submission it answers."""
    out_dir = feedback_dir(Path(course_dir), student, lab)
    out_dir.mkdir(parents=True, exist_ok=True)
    page = out_dir / f"{lab}.html"
    atomic_write(page, html.encode("utf-8"), mode=0o644)  # readable by a web server or a TA account
    submitted = Path(course_dir) / "submitted" / student / lab
    for name in NBGRADER_FILES:
        data = _read_bounded(submitted / name, 4096)
        if data is not None:
            atomic_write(out_dir / name, data)
    return page
