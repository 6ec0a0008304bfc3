"""Set-up the batch benchmarks share: a course holding a lab's demo class repeated to N students, and fresh copies
of it (one per way of grading it, so each starts from nothing graded). Imported by the scripts beside it, which
run as `python benchmarks/<name>.py` (this folder is then first on sys.path)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path


def demo_course(course: Path, lab: str, students: int) -> Path:
    """A new course at ``course`` (what was there is removed) with ``students`` submissions of ``lab``: the lab's
    demo class (correct, partly wrong, cheating, ...) repeated, all handed in on time an hour ago."""
    from autograder.course.create import init_course
    from autograder.course.demo import demo_classes, write_submission

    if course.exists():
        shutil.rmtree(course)
    init_course(course, [lab])
    klass = list(demo_classes()[lab]["students"].items())
    when = datetime.now(UTC) - timedelta(hours=1)
    for i in range(students):
        name, spec = klass[i % len(klass)]
        write_submission(course, lab, f"{name}{i:02d}", {**spec, "late": False}, when)
    return course


def fresh_copy(course: Path, dest: Path) -> Path:
    """A copy of ``course`` at ``dest`` without its grades (grades.db, autograded/)."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(course, dest, symlinks=True, ignore=shutil.ignore_patterns("grades.db*", "autograded"))
    return dest
