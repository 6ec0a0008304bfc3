"""One `sparkgrade grade` per course at a time. Two batches on the same course would grade every submission
twice and race for nbgrader's gradebook; the second one refuses (or, asked to, waits) and names the process that
holds the course.

The lock is fcntl.flock on COURSE_DIR/.sparkgrade/grade.lock: the kernel releases it when the holder exits, however
it exits, so a killed grader never leaves the course locked. The file holds the holder's pid, host and start time,
for the message only.
"""

from __future__ import annotations

import fcntl
import os
import platform
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from autograder.errors import BusyError, FileSystemError


def lock_path(course_dir: Path) -> Path:
    return Path(course_dir) / ".sparkgrade" / "grade.lock"


@contextmanager
def grading_lock(course_dir: Path, *, wait: bool = False,
                 on_wait: Callable[[str], None] = lambda _: None) -> Iterator[None]:
    """Hold the course's grade lock for the block. Held by another process: BusyError naming it, or (``wait``)
    ``on_wait`` hears who holds it and this blocks until it is free."""
    path = lock_path(course_dir)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise FileSystemError(f"cannot create {path}: {exc.strerror} (the course folder must be writable to "
                              "grade)") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            if not wait:
                raise BusyError(f"another `sparkgrade grade` is grading {course_dir} ({holder}): wait for it to "
                                "finish, stop it, or add --wait to start when it is done") from None
            on_wait(f"waiting for the other `sparkgrade grade` on this course to finish ({holder})")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {platform.node()}, started {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC\n"
                  .encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> str:
    text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    return text or "a process that has not yet written its pid"
