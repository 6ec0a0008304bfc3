"""A submission as the grader receives it: the notebook's bytes and the data files beside it, read from the folder
nbgrader's collect made (COURSE_DIR/submitted/<student>/<lab>/<lab>.ipynb), without trusting anything in it.

Every folder submitted/<student>/<lab>/ is a submission, whatever is in it: a folder without <lab>.ipynb (a notebook
saved as Untitled.ipynb, say) is graded as invalid with a reason naming what was found, never left out of the
table, the report and the export as if the student had not submitted."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from autograder.errors import UserError
from autograder.intake.notebook import MAX_NOTEBOOK_BYTES
from autograder.order import natural_key

# Files a check may read from the submission folder, as untrusted data, with a size cap each.
DATA_FILES = {"benchmarks.json": 2 * 1024 * 1024}


@dataclass(frozen=True)
class Submission:
    student: str
    lab: str
    notebook: bytes
    files: dict[str, bytes] = field(default_factory=dict)
    problem: str = ""  # why there is no notebook to grade (the folder lacks <lab>.ipynb): graded as invalid

    @property
    def content_hash(self) -> str:
        h = hashlib.sha256(self.notebook)
        for name in sorted(self.files):
            h.update(name.encode() + b"\0" + self.files[name])
        if self.problem:  # renaming Untitled.ipynb to another wrong name is new content, graded again
            h.update(b"\0problem\0" + self.problem.encode())
        return h.hexdigest()


MAX_NAMES_SHOWN = 4  # of the files found in a folder without the expected notebook


def find_submissions(course_dir: Path, lab: str, students: list[str] | None) -> list[tuple[str, Path]]:
    """(student, COURSE_DIR/submitted/<student>/<lab>/<lab>.ipynb) for every submitted folder of ``lab``, in natural
    order of the student ids (s7 before s10). The notebook path is where nbgrader puts it, whether or not it is
    there: read_submission_folder says what was found instead. Links are not followed (the folder is the
    student's)."""
    root = course_dir / "submitted"
    found = []
    if root.is_dir():
        for folder in root.glob(f"*/{lab}"):
            if folder.is_dir() and not folder.is_symlink() and not folder.parent.is_symlink():
                found.append((folder.parent.name, folder / f"{lab}.ipynb"))
    found.sort(key=lambda sp: natural_key(sp[0]))
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
        problem = ""
        try:
            data = read_bounded(dir_fd, notebook_path.name, 2 * MAX_NOTEBOOK_BYTES)
        except OutputError as exc:
            data, problem = None, f"{exc}: submit the notebook Jupyter saved"
        if data is None and not problem:
            problem = missing_notebook_reason(notebook_path.name, os.listdir(dir_fd))
        notebook = data or b""
    finally:
        os.close(dir_fd)
    return Submission(student, lab, notebook, files, problem)


def missing_notebook_reason(expected: str, names: list[str]) -> str:
    """One line naming what the folder holds instead of ``expected`` (names are the student's: shown cleaned,
    a few at most)."""
    def shown(name: str) -> str:
        clean = "".join(ch if ch.isprintable() else "?" for ch in name)
        return clean if len(clean) <= 60 else clean[:57] + "..."

    notebooks = sorted((n for n in names if n.endswith(".ipynb")), key=natural_key)
    others = sorted((n for n in names if not n.endswith(".ipynb") and n not in ("timestamp.txt",
                     "submission_secret.txt") and not n.startswith(".")), key=natural_key)
    listed = notebooks or others
    if not listed:
        found = "found no notebook in the submitted folder"
    else:
        more = f" and {len(listed) - MAX_NAMES_SHOWN} more" if len(listed) > MAX_NAMES_SHOWN else ""
        what = "found" if notebooks else "found no notebook, only"
        found = f"{what} {', '.join(shown(n) for n in listed[:MAX_NAMES_SHOWN])}{more}"
    return f"{found}, expected {expected}: rename the notebook to {expected} and submit again"
