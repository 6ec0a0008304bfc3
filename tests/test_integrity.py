"""Issue 12: grades that no submission can game, stall or derail. Each named case of the issue has a test here;
the sandbox is stubbed where it is not the point (fast), and real where it is."""

from __future__ import annotations

import csv
import io

import pytest

from autograder.records import CheckResult, Flag, GradeRecord


def _record(student: str, message: str = "ok", score: float = 1.0) -> GradeRecord:
    check = CheckResult("c1", "f", score, 2.0, "failed", message)
    return GradeRecord(student=student, assignment="lab-x", status="graded", score=score, max_score=2.0,
                       checks=(check,), flags=(Flag("late", "-1 h"),), content_hash="h", seed="s",
                       rubric_version="1", sandboxed=True)


# -- spreadsheet injection (item 7) -----------------------------------------------------------------------------

@pytest.mark.parametrize("evil", ["=HYPERLINK(\"http://x\",\"y\")", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"])
def test_csv_and_canvas_exports_escape_text_a_spreadsheet_would_evaluate(evil):
    from autograder.course.export import to_canvas, to_csv

    rows = list(csv.DictReader(io.StringIO(to_csv([_record(evil, message=evil, score=-0.0)]))))
    assert rows[0]["student"] == "'" + evil and rows[0]["message"] == "'" + evil
    assert rows[0]["flags"] == "late: -1 h"  # only the start of a cell matters
    canvas = list(csv.reader(io.StringIO(to_canvas([_record(evil)]))))
    assert canvas[2][0] == "'" + evil and canvas[2][2] == "'" + evil
    assert canvas[2][4] == "1.0" and canvas[1][4] == "2.0"  # numbers stay numbers


def test_exports_keep_negative_numbers_as_numbers():
    from autograder.course.export import cell

    assert cell(-1.5) == -1.5 and cell(-3) == -3 and cell("plain") == "plain"
