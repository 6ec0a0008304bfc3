"""A submission as the grader receives it: the notebook's bytes and the data files beside it, read from the folder
nbgrader's collect made (COURSE_DIR/submitted/<student>/<lab>/<lab>.ipynb), without trusting anything in it."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from autograder.errors import UserError
from autograder.intake.notebook import MAX_NOTEBOOK_BYTES

# Files a check may read from the submission folder, as untrusted data, with a size cap each.
DATA_FILES = {"benchmarks.json": 2 * 1024 * 1024}


@dataclass(frozen=True)
class Submission:
    student: str
    lab: str
    notebook: bytes
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        h = hashlib.sha256(self.notebook)
        for name in sorted(self.files):
            h.update(name.encode() + b"\0" + self.files[name])
        return h.hexdigest()


def find_submissions(course_dir: Path, lab: str, students: list[str] | None) -> list[tuple[str, Path]]:
    """COURSE_DIR/submitted/<student>/<lab>/<lab>.ipynb, as nbgrader collects them."""
    root = course_dir / "submitted"
    found = sorted((p.parent.parent.name, p) for p in root.glob(f"*/{lab}/{lab}.ipynb")) if root.is_dir() else []
    if students:
        missing = sorted(set(students) - {s for s, _ in found})
        if missing:
            raise UserError(f"no submission of {lab} for: {', '.join(missing)} (looked in {root})")
        found = [(s, p) for s, p in found if s in students]
    return found


def read_submission_folder(student: str, lab: str, notebook_path: Path) -> Submission:
    """The submitted notebook and data files. The student made this folder: a symlink or FIFO planted under an
    expected name is not followed (it would let the grader read the course secret or another submission)."""
    from autograder.sandbox.codec import OutputError, open_dir, read_bounded

    try:
        dir_fd = open_dir(str(notebook_path.parent))
    except OSError:
        return Submission(student, lab, b"")  # a link or a vanished folder: graded as invalid, not followed
    try:
        files = {}
        for name, cap in DATA_FILES.items():
            try:
                data = read_bounded(dir_fd, name, cap)
            except OutputError:
                data = None  # the benchmark checks then say that no usable file was submitted
            if data is not None:
                files[name] = data
        try:
            notebook = read_bounded(dir_fd, notebook_path.name, 2 * MAX_NOTEBOOK_BYTES) or b""
        except OutputError:
            notebook = b""  # graded as invalid: not a notebook we can read
    finally:
        os.close(dir_fd)
    return Submission(student, lab, notebook, files)
