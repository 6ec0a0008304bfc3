"""Where graded results live in a course folder. One JSON record per (lab, student), written atomically, so a
killed grader never leaves a half-written grade and never loses another student's.

Layout (inside COURSE_DIR, never visible to a sandbox):
    .sparkgrade/secret                       per-course secret that seeds each submission's check inputs
    .sparkgrade/results/<lab>/<student>.json GradeRecord.to_dict()
    autograded/<student>/<lab>/<lab>.ipynb   the executed (repaired) notebook, where nbgrader keeps its own
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

from autograder.records import GradeRecord


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class CourseStore:
    def __init__(self, course_dir: Path) -> None:
        self.course_dir = Path(course_dir)
        self.root = self.course_dir / ".sparkgrade"

    def secret(self) -> bytes:
        path = self.root / "secret"
        if not path.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write(path, secrets.token_hex(32).encode())
            path.chmod(0o600)
        return path.read_bytes().strip()

    def seed_for(self, student: str, lab: str, content_hash: str) -> str:
        """Inputs differ per submission yet a regrade of the same content reproduces them exactly."""
        return hmac.new(self.secret(), f"{student}\0{lab}\0{content_hash}".encode(), hashlib.sha256).hexdigest()[:32]

    def _record_path(self, lab: str, student: str) -> Path:
        return self.root / "results" / lab / f"{student}.json"

    def save(self, record: GradeRecord, executed_notebook: bytes | None) -> None:
        if executed_notebook is not None:
            atomic_write(self.course_dir / "autograded" / record.student / record.assignment /
                         f"{record.assignment}.ipynb", executed_notebook)
        atomic_write(self._record_path(record.assignment, record.student),
                     json.dumps(record.to_dict(), indent=1).encode())

    def load(self, lab: str, student: str) -> GradeRecord | None:
        path = self._record_path(lab, student)
        if not path.exists():
            return None
        return GradeRecord.from_dict(json.loads(path.read_text()))

    def records(self, lab: str | None = None) -> Iterator[GradeRecord]:
        base = self.root / "results"
        labs = [lab] if lab else sorted(p.name for p in base.iterdir() if p.is_dir()) if base.exists() else []
        for name in labs:
            for path in sorted((base / name).glob("*.json")):
                yield GradeRecord.from_dict(json.loads(path.read_text()))
