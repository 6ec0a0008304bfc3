"""The formats of `sparkgrade export`: the graded submissions as JSON, a flat CSV, or a Canvas gradebook CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path

from autograder.db.store import CourseStore
from autograder.errors import UserError
from autograder.records import GradeRecord
from autograder.similarity import Pair

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


def to_json(records: Iterable[GradeRecord], similar: Iterable[Pair] | None = None) -> str:
    """The records as a list; with ``similar`` (autograder.similarity's pairs), each record lists under "similar" the
    submissions of the same lab alike to it: {"student", "score", "share"}, share being the part of this record's code
    found in the other's."""
    alike: dict[tuple[str, str], list[dict[str, object]]] = {}
    for p in similar or ():
        alike.setdefault((p.lab, p.a), []).append({"student": p.b, "score": round(p.score, 3),
                                                   "share": round(p.a_share, 3)})
        alike.setdefault((p.lab, p.b), []).append({"student": p.a, "score": round(p.score, 3),
                                                   "share": round(p.b_share, 3)})
    out = []
    for r in records:
        d = r.to_export()
        if similar is not None:
            d["similar"] = alike.get((r.assignment, r.student), [])
        out.append(d)
    return json.dumps(out, indent=2)


def to_csv(records: Iterable[GradeRecord]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["student", "assignment", "status", "score", "max_score", "check", "function", "points",
                     "max_points", "check_status", "message", "diagnosis", "flags"])
    for r in records:
        flags = "; ".join(f"{f.kind}: {f.message}" for f in r.flags)
        for c in r.checks or ():
            writer.writerow(_row([r.student, r.assignment, r.status, r.score, r.max_score, c.id, c.function,
                                  c.points, c.max_points, c.status, c.message, c.diagnosis, flags]))
    return out.getvalue()


def to_canvas(records: Iterable[GradeRecord]) -> str:
    """Canvas's gradebook import: Student, ID, SIS User ID, Section, then one column per assignment."""
    records = list(records)
    labs = sorted({r.assignment for r in records})
    rows: dict[str, dict[str, float]] = {}
    for r in records:
        rows.setdefault(r.student, {})[r.assignment] = r.score
    maxima = {r.assignment: r.max_score for r in records}
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(_row(["Student", "ID", "SIS User ID", "Section", *labs]))
    writer.writerow(["Points Possible", "", "", "", *(maxima[lab] for lab in labs)])
    for student in sorted(rows):
        writer.writerow(_row([student, "", student, "", *(rows[student].get(lab, "") for lab in labs)]))
    return out.getvalue()


FORMATS = {"json": to_json, "csv": to_csv, "canvas": to_canvas}


def export_records(course: Path, assignment: str | None, fmt: str, db_url: str | None = None) -> tuple[str, int]:
    """(the export as text, how many records it holds)."""
    if not course.is_dir():
        raise UserError(f"no course folder at {course}")
    records = list(CourseStore(course, db_url).records(assignment))
    if fmt == "json":
        from autograder.similarity import THRESHOLD, class_similarity

        pairs = [p for lab in sorted({r.assignment for r in records}) for p in class_similarity(course, lab, THRESHOLD)]
        return to_json(records, pairs), len(records)
    return FORMATS[fmt](records), len(records)
