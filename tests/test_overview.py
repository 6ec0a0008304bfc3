"""The course overview (autograder.feedback.overview, `sparkgrade overview`): scores per student and lab, missing
submissions, flags to review (similarity included), links that resolve; rendered in headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import nbformat
import pytest
from test_feedback import chromium_dom, harness_copy, harness_result, needs_chromium
from test_similarity import HONEST_A, HONEST_B, RENAMED, release, submit

from autograder.cli import main
from autograder.db.store import CourseStore
from autograder.records import Flag, GradeRecord

ROUTER, SCAN = "lab-2.4.4-moe-router", "lab-2.4.2-mamba-architecture"


def graded(student: str, lab: str, score: float, *flags: Flag) -> GradeRecord:
    return GradeRecord(student=student, assignment=lab, status="graded", score=score, max_score=10.0, checks=(),
                       flags=flags, content_hash=student * 8, seed="0" * 32, rubric_version="1", sandboxed=True)


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two labs; ada and bob (a renamed copy of ada) submit the router lab, cy too; only ada submits the scan lab,
    with a tampering flag; dee has a late router submission still waiting to be graded."""
    course = tmp_path_factory.mktemp("course")
    for lab in (ROUTER, SCAN):
        (course / "source" / lab).mkdir(parents=True)
    (course / "release" / ROUTER).mkdir(parents=True)
    nbformat.write(release(), course / "release" / ROUTER / f"{ROUTER}.ipynb")
    with CourseStore(course) as store:
        for student, answers, score in (("ada", HONEST_A, 10), ("bob", RENAMED, 9.5), ("cy", HONEST_B, 4),
                                        ("dee", HONEST_B, None)):
            folder = course / "submitted" / student / ROUTER
            folder.mkdir(parents=True)
            (folder / f"{ROUTER}.ipynb").write_bytes(submit(answers))
            if score is not None:
                late = (Flag("late", "submitted 2.0 h after the due date"),) if student == "cy" else ()
                store.save(graded(student, ROUTER, score, *late), None)
        folder = course / "submitted" / "ada" / SCAN
        folder.mkdir(parents=True)
        (folder / f"{SCAN}.ipynb").write_bytes(submit({}))
        store.save(graded("ada", SCAN, 2, Flag("tampered", "numpy.testing.assert_allclose was replaced")), None)
    assert main(["feedback", str(course), ROUTER]) == 0
    assert main(["report", str(course), ROUTER]) == 0
    assert main(["overview", str(course)]) == 0
    return course


def overview(course: Path) -> str:
    return (course / "reports" / "index.html").read_text()


def section(html: str, name: str) -> str:
    part = html[html.index(f'id="{name}"'):]
    return part[:part.index("</section>")]


def test_scores_per_student_and_lab_with_missing_and_waiting_submissions(course: Path) -> None:
    rows = {m[1]: m[2] for m in re.finditer(r"<tr><td>(\w+)</td>(.*?)</tr>", section(overview(course), "scores"),
                                           re.S)}
    assert sorted(rows) == ["ada", "bob", "cy", "dee"]
    assert ">10<" in rows["ada"] and ">2<" in rows["ada"] and "missing" not in rows["ada"]
    assert "missing" in rows["bob"] and "late" in rows["cy"] and "not graded" in rows["dee"]
    missing = section(overview(course), "missing")
    assert missing.count("<li>") == 3 and "bob" in missing and "cy" in missing and "dee" in missing


def test_flags_to_review_include_tampering_and_similarity_but_not_lateness(course: Path) -> None:
    review = section(overview(course), "review")
    assert "tampered" in review and "similarity" in review and "late" not in review
    similar = next(row for row in review.split("<tr>") if "similarity" in row)
    assert "ada" in similar and "bob" in similar and "cy" not in similar


def test_every_link_resolves_to_a_lab_report_or_a_feedback_page(course: Path) -> None:
    html = overview(course)
    links = set(re.findall(r'href="([^"]+)"', html))
    assert f"{ROUTER}.html" in links and "../feedback/ada/lab-2.4.4-moe-router/lab-2.4.4-moe-router.html" in links
    for href in links:
        assert (course / "reports" / unquote(href)).resolve().is_file(), href


def test_a_missing_course_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["overview", str(tmp_path / "nope")]) != 0
    assert capsys.readouterr().err.count("\n") == 1


@needs_chromium
def test_overview_renders_in_chromium(course: Path, tmp_path: Path) -> None:
    dom = chromium_dom(harness_copy(course / "reports" / "index.html", tmp_path / "index.html", keep_csp=True))
    got = harness_result(dom)
    assert got["ran"] and got["title"] == "Course overview" and got["body"] > 300 and not got["pwned"]
    assert dom.count('class="badge flag"') >= 3  # tampered and the two sides of the similar pair
