"""The formats of `sparkgrade export`: the graded submissions as JSON, a flat CSV, or a Canvas gradebook CSV.

Each carries one total per submission (autograded.course.totals): ``score`` / ``max_score`` are the autograded points
(the hidden checks), ``written_score`` the written answers graded in formgrader, ``total_score`` their sum, which
is what nbgrader's own export shows too, and ``final`` says whether it can still change. Canvas gets the total."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from autograder.course.totals import Total, course_totals
from autograder.db.store import CourseStore
from autograder.errors import UserError
from autograder.order import natural_key
from autograder.records import GradeRecord
from autograder.similarity import Pair

Totals = dict[tuple[str, str], Total]

# A spreadsheet (Excel, LibreOffice, Google Sheets) evaluates a cell that starts with one of these as a formula:
# `=HYPERLINK(...)` in a student id would run on the instructor's machine. OWASP's advice: prefix such text with a
# single quote, which the spreadsheet shows as text. Numbers are written as numbers, never prefixed.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value: object) -> object:
    """A CSV cell a spreadsheet shows as written: text that would start a formula gets a leading quote."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _row(values: Iterable[object]) -> list[object]:
    return [cell(v) for v in values]


def _total(r: GradeRecord, totals: Totals | None) -> Total:
    """The record's total; without course data (``totals`` None) the autograded points alone, as final."""
    if totals is not None and (r.assignment, r.student) in totals:
        return totals[(r.assignment, r.student)]
    return Total(r.score, r.max_score, None, 0.0, 0, r.score, r.max_score, True)


def to_json(records: Iterable[GradeRecord], totals: Totals | None = None, similar: Iterable[Pair] | None = None) -> str:
    """The records as a list, each with its total; with ``similar`` (autograder.similarity's pairs), each record
    lists under "similar" the submissions of the same lab alike to it: {"student", "score", "share"}, share being
    the part of this record's code found in the other's."""
    alike: dict[tuple[str, str], list[dict[str, object]]] = {}
    for p in similar or ():
        alike.setdefault((p.lab, p.a), []).append({"student": p.b, "score": round(p.score, 3),
                                                   "share": round(p.a_share, 3)})
        alike.setdefault((p.lab, p.b), []).append({"student": p.a, "score": round(p.score, 3),
                                                   "share": round(p.b_share, 3)})
    out = []
    for r in records:
        d = {**r.to_export(), **_total(r, totals).to_export()}
        if similar is not None:
            d["similar"] = alike.get((r.assignment, r.student), [])
        out.append(d)
    return json.dumps(out, indent=2)


def to_csv(records: Iterable[GradeRecord], totals: Totals | None = None) -> str:
    """One row per check (a submission without checks, e.g. an invalid one, gets one row with empty check
    columns), with the submission's total on every row."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["student", "assignment", "status", "score", "max_score", "check", "function", "points",
                     "max_points", "check_status", "message", "diagnosis", "flags", "written_score",
                     "written_max_score", "total_score", "total_max_score", "final"])
    for r in records:
        flags = "; ".join(f"{f.kind}: {f.message}" for f in r.flags)
        t = _total(r, totals)
        tail = ["" if t.written is None else t.written, t.written_max, t.total, t.total_max, t.final]
        for c in r.checks or ():
            writer.writerow(_row([r.student, r.assignment, r.status, r.score, r.max_score, c.id, c.function,
                                  c.points, c.max_points, c.status, c.message, c.diagnosis, flags, *tail]))
        if not r.checks:
            writer.writerow(_row([r.student, r.assignment, r.status, r.score, r.max_score, "", "", "", "", "",
                                  r.reason, "", flags, *tail]))
    return out.getvalue()


def to_canvas(records: Iterable[GradeRecord], totals: Totals | None = None) -> str:
    """Canvas's gradebook import: Student, ID, SIS User ID, Section, then one column per assignment holding the
    total (autograded + written), out of the total's maximum."""
    records = list(records)
    labs = sorted({r.assignment for r in records})
    rows: dict[str, dict[str, float]] = {}
    maxima: dict[str, float] = {}
    for r in records:
        t = _total(r, totals)
        rows.setdefault(r.student, {})[r.assignment] = t.total
        maxima[r.assignment] = t.total_max
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(_row(["Student", "ID", "SIS User ID", "Section", *labs]))
    writer.writerow(["Points Possible", "", "", "", *(maxima[lab] for lab in labs)])
    for student in sorted(rows, key=natural_key):
        writer.writerow(_row([student, "", student, "", *(rows[student].get(lab, "") for lab in labs)]))
    return out.getvalue()


FORMATS = {"json": to_json, "csv": to_csv, "canvas": to_canvas}


@dataclass(frozen=True)
class Export:
    text: str
    count: int
    provisional: int  # submissions whose total can still change (written answers not graded yet)


def export_records(course: Path, assignment: str | None, fmt: str, db_url: str | None = None) -> Export:
    if not course.is_dir():
        raise UserError(f"no course folder at {course}")
    from autograder.course.attempts import counted_records
    from autograder.course.config import load_config

    with CourseStore(course, db_url, readonly=True) as store:  # a read: never creates or migrates a database
        records = counted_records(store, load_config(course), assignment)  # per lab policy: the last or the best
    totals = course_totals(course, records)
    provisional = sum(not t.final for t in totals.values())
    if fmt == "json":
        from autograder.similarity import THRESHOLD, class_similarity

        pairs = [p for lab in sorted({r.assignment for r in records}) for p in class_similarity(course, lab, THRESHOLD)]
        return Export(to_json(records, totals, pairs), len(records), provisional)
    return Export(FORMATS[fmt](records, totals), len(records), provisional)
