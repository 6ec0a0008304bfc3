"""Set-up the batch benchmarks share: a course holding a lab's demo class repeated to N students, fresh copies of
it (one per way of grading it, so each starts from nothing graded), and a timed command. Imported by the scripts
beside it, which run as `python benchmarks/<name>.py` (this folder is then first on sys.path)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
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


def timed(cmd: list[str], cwd: Path, what: str | None = None, source: Path | None = None) -> float:
    """Wall seconds of ``cmd`` run in ``cwd`` with this Python's scripts first on PATH; a failure stops the
    benchmark, saying ``what`` failed (by default the command's first words) and the end of its stderr.
    ``source``: another source tree whose autograder and reference packages come first on the path."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{what or ' '.join(cmd[:4])} failed: {proc.stderr[-1500:]}")
    return wall
