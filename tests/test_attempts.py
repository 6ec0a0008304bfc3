"""The attempt that counts (sparkgrade.yaml ``counts: last | best``) is the one the export carries and the feedback
page names, with its score, while the page still shows the latest attempt's own feedback; a submission past the
cap gets a page saying it was not graded. One decision (autograder.course.attempts) for all of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autograder.course.attempts import counted, counted_attempt, counted_records, graded_attempts
from autograder.course.config import AttemptPolicy, load_config
from autograder.course.export import export_records
from autograder.db.store import CourseStore
from autograder.feedback import write_feedback_pages
from autograder.feedback.page import feedback_dir, write_limit_page
from autograder.records import CheckResult, GradeRecord

LAB = "lab-2.4.4-moe-router"


def record(score: float, content: str, student: str = "ada") -> GradeRecord:
    check = CheckResult("topk_matches_reference", "top_k_routing", score, 10.0,
                        "passed" if score == 10 else "failed", f"attempt {content} found {score:g}")
    return GradeRecord(student=student, assignment=LAB, status="graded", score=score, max_score=10.0,
                       checks=(check,), flags=(), content_hash=content, seed="0", rubric_version="1", sandboxed=True)


def course(tmp_path: Path, counts: str) -> Path:
    """A course with three graded attempts of ada's (6, then 8, then 4 points) and one of bob's."""
    course = tmp_path / counts
    course.mkdir()
    (course / "sparkgrade.yaml").write_text(f"policies:\n  {LAB}: {{attempts: 3, counts: {counts}}}\n")
    with CourseStore(course) as store:
        for score, content in ((6.0, "one"), (8.0, "two"), (4.0, "three")):
            store.save(record(score, content), None)
        store.save(record(5.0, "b1", "bob"), None)
    return course


@pytest.mark.parametrize(("counts", "score", "number"), [("best", 8.0, 2), ("last", 4.0, 3)])
def test_the_export_carries_the_attempt_that_counts(tmp_path: Path, counts: str, score: float, number: int) -> None:
    path = course(tmp_path, counts)
    rows = {r["student"]: r for r in json.loads(export_records(path, LAB, "json").text)}
    assert rows["ada"]["score"] == score and rows["ada"]["total_score"] == score
    assert rows["bob"]["score"] == 5.0
    csv = export_records(path, LAB, "csv").text.splitlines()
    assert any(line.startswith(f"ada,{LAB},graded,{score}") for line in csv), csv
    with CourseStore(path, readonly=True) as store:
        found = counted_attempt(store, LAB, "ada", load_config(path).policies[LAB])
        assert found is not None and (found.number, found.attempts, found.record.score) == (number, 3, score)
        assert [r.score for r in counted_records(store, load_config(path)) if r.student == "ada"] == [score]


def test_the_page_names_the_attempt_that_counts_and_shows_the_latest_feedback(tmp_path: Path) -> None:
    path = course(tmp_path, "best")
    assert write_feedback_pages(path, LAB) == (2, [])
    page = (feedback_dir(path, "ada", LAB) / f"{LAB}.html").read_text()
    assert "Your grade for this lab: 8 / 10" in page
    assert "attempt 2 of 3 counts (best)" in page
    assert "This page is the feedback of attempt 3 (4 / 10)" in page
    assert "attempt three found 4" in page and "attempt two found" not in page  # the latest attempt's feedback
    bob = (feedback_dir(path, "bob", LAB) / f"{LAB}.html").read_text()
    assert "Your grade for this lab" in bob and "attempt 1 of 1 counts (best)" in bob  # capped: named anyway
    assert "This page is the feedback of" not in bob  # his only attempt is the one that counts


def test_the_page_of_the_last_attempt_under_counts_last_says_it_counts(tmp_path: Path) -> None:
    path = course(tmp_path, "last")
    write_feedback_pages(path, LAB)
    page = (feedback_dir(path, "ada", LAB) / f"{LAB}.html").read_text()
    assert "Your grade for this lab: 4 / 10" in page and "attempt 3 of 3 counts (last)" in page
    assert "This page is the feedback of" not in page


def test_a_submission_past_the_cap_gets_a_page_saying_so(tmp_path: Path) -> None:
    path = course(tmp_path, "best")
    with CourseStore(path, readonly=True) as store:
        found = counted_attempt(store, LAB, "ada", AttemptPolicy(attempts=3, counts="best"))
    page = write_limit_page(path, LAB, "ada", found).read_text()
    assert "This submission was not graded" in page and "allows 3 graded attempts" in page
    assert "Your grade for this lab: 8 / 10" in page and "attempt 2 of 3 counts (best)" in page


def test_a_regrade_of_the_same_content_is_the_same_attempt() -> None:
    history = [record(6, "one"), record(8, "two"), record(7, "one")]  # "one" regraded under a new rubric
    assert [r.content_hash for r in graded_attempts(history)] == ["one", "two"]
    assert graded_attempts(history)[0].score == 7
    assert counted(history, AttemptPolicy(counts="best")).content_hash == "two"
    assert counted([record(3, "a"), record(3, "b")], AttemptPolicy(counts="best")).content_hash == "a"


def test_the_overview_scores_the_attempt_that_counts(tmp_path: Path) -> None:
    from autograder.feedback.overview import write_overview

    path = course(tmp_path, "best")
    html = write_overview(path)[0].read_text()
    row = html[html.index(">ada<"):]
    row = row[:row.index("</tr>")]
    assert ">8<" in row and ">4<" not in row, row
