"""Every lab graded for real: the course's own answers, submitted as a student would, go through the sandbox
(models crossing as Model(name), gradient calls, definitions-only execution) and earn every function point."""

from __future__ import annotations

import shutil

import pytest

from autograder.batch import grade_course
from autograder.course.create import init_course, source_labs
from autograder.sandbox import check_sandbox_available

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def course(tmp_path_factory, tiny_models_cache):
    check_sandbox_available()
    course = tmp_path_factory.mktemp("labs") / "course"
    init_course(course)
    for lab in source_labs():
        folder = course / "submitted" / "alice" / lab
        folder.mkdir(parents=True)
        shutil.copy(course / "source" / lab / f"{lab}.ipynb", folder / f"{lab}.ipynb")
    return course


@pytest.mark.parametrize("lab", source_labs())
def test_course_answers_earn_every_function_point_in_the_sandbox(course, lab):
    (record,) = grade_course(course, lab)
    assert record.status == "graded" and record.sandboxed
    functions = [c for c in record.checks if c.function != "benchmarks"]
    assert functions and all(c.status == "passed" for c in functions), [
        (c.id, c.message) for c in functions if c.status != "passed"]
    # no benchmarks.json was submitted: those checks (and only those) say so
    assert all("no benchmarks.json" in c.message for c in record.checks if c.function == "benchmarks")
    assert record.timings["notebook_s"] < 120
