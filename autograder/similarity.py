"""Similarity across a class: for one lab, a score for every pair of submissions over the code the students wrote.

What is compared: the code cells a student writes (nbgrader's solution cells, and cells the student added), with the
released scaffold taken out twice: lines that are in the released notebook are dropped, and whatever fingerprints the
released code has are ignored as boilerplate. The comparison itself is copydetect's (a maintained implementation of
MOSS's winnowing, Schleimer, Wilkerson and Aiken 2003): pygments tokenises the code, every variable, attribute and
function name becomes one letter, strings become one letter, whitespace and comments go, so renaming variables or
reformatting does not hide a copy. A pair's score is the larger of the two shares (the part of A's code found in B,
and of B's in A): a student who copied one function into an otherwise own notebook still shows.

Pure functions of the notebooks' bytes; `class_similarity` reads a course's submitted/ and release/ folders.
"""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from markupsafe import Markup

from autograder.intake.submission import find_submissions, read_submission_folder

THRESHOLD = 0.6  # pairs at or above this score are shown to the instructor
K = 25  # copydetect's default noise threshold: matches shorter than 25 characters of normalised code are ignored
WINDOW = 1  # copydetect's default winnowing window (every k-gram kept: the most sensitive setting)
MIN_CHARS = 3 * K  # less normalised code than this is too little to call anything a copy


@dataclass(frozen=True)
class Pair:
    """Two submissions alike. ``a_html``/``b_html``: each side's code, escaped, the matching parts in <mark>."""

    lab: str
    a: str
    b: str
    score: float
    a_share: float  # the part of a's code that is in b's
    b_share: float
    a_html: Markup
    b_html: Markup

    def to_export(self) -> dict[str, object]:
        return {"lab": self.lab, "a": self.a, "b": self.b, "score": round(self.score, 3),
                "a_share": round(self.a_share, 3), "b_share": round(self.b_share, 3)}


def _code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.get("cell_type") == "code"]


def _read(notebook: bytes) -> nbformat.NotebookNode | None:
    try:
        nb: nbformat.NotebookNode = nbformat.reads(notebook.decode("utf-8", "replace"), as_version=4)
        return nb
    except Exception:  # an unreadable notebook has no code to compare; its grade says why
        return None


def scaffold(release_notebook: bytes) -> str:
    """The released notebook's code: what every student starts from."""
    nb = _read(release_notebook)
    return "" if nb is None else "\n".join(str(c.source) for c in _code_cells(nb))


def student_code(notebook: bytes, release_notebook: bytes) -> str:
    """The code a student wrote: solution cells and cells of their own, without the lines the release holds."""
    nb, release = _read(notebook), _read(release_notebook)
    if nb is None:
        return ""
    released_cells = {str(c.source) for c in _code_cells(release)} if release is not None else set()
    released_lines = {line.strip() for src in released_cells for line in src.splitlines() if line.strip()}
    parts = []
    for cell in _code_cells(nb):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if (meta.get("grade") and not meta.get("solution")) or meta.get("locked"):
            continue  # the visible tests and read-only cells are the instructor's
        if not meta.get("solution") and str(cell.source) in released_cells:
            continue  # an unchanged released cell (instructions' code, imports)
        lines = [line for line in str(cell.source).splitlines() if line.strip() and line.strip() not in released_lines]
        if lines:
            parts.append("\n".join(lines))
    return "\n\n".join(parts)


def _fingerprint(name: str, code: str, boilerplate: list[int]) -> Any:  # a copydetect.CodeFingerprint
    from copydetect import CodeFingerprint

    return CodeFingerprint(name + ".py", K, WINDOW, boilerplate=boilerplate, language="python", fp=io.StringIO(code))


def _marked(code: str, slices: Any) -> Markup:  # slices: copydetect's 2 x N array of character offsets
    from copydetect.utils import highlight_overlap

    if slices.shape[-1] == 0:
        return Markup.escape(code)
    html, _ = highlight_overlap(code, slices, "<mark>", "</mark>", escape_html=True)
    return Markup(html)  # safe: highlight_overlap escaped every piece of the student text


def compare(lab: str, codes: dict[str, str], release_code: str = "", threshold: float = 0.0) -> list[Pair]:
    """Every pair of ``codes`` (student -> code) scoring at least ``threshold``, highest first."""
    from copydetect import compare_files

    boilerplate = sorted(_fingerprint("release", release_code, []).hashes) if release_code.strip() else []
    prints = {s: _fingerprint(s, code, boilerplate) for s, code in sorted(codes.items())}
    prints = {s: fp for s, fp in prints.items() if len(fp.filtered_code) >= MIN_CHARS and fp.token_coverage > 0}
    pairs = []
    for a, b in itertools.combinations(sorted(prints), 2):
        _, (share_a, share_b), (slices_a, slices_b) = compare_files(prints[a], prints[b])
        score = float(max(share_a, share_b))
        if score >= threshold and score > 0:
            pairs.append(Pair(lab, a, b, score, float(share_a), float(share_b),
                              _marked(prints[a].raw_code, slices_a), _marked(prints[b].raw_code, slices_b)))
    return sorted(pairs, key=lambda p: (-p.score, p.a, p.b))


def class_codes(course_dir: Path, lab: str) -> dict[str, str]:
    """student -> the code they wrote, for every submission of ``lab`` in the course's submitted/ folder."""
    release = course_dir / "release" / lab / f"{lab}.ipynb"
    release_bytes = release.read_bytes() if release.is_file() else b""
    return {student: student_code(read_submission_folder(student, lab, path).notebook, release_bytes)
            for student, path in find_submissions(course_dir, lab, None)}


def class_similarity(course_dir: Path, lab: str, threshold: float = THRESHOLD) -> list[Pair]:
    """The pairs of ``lab``'s submissions scoring at least ``threshold``, highest first."""
    release = course_dir / "release" / lab / f"{lab}.ipynb"
    release_code = scaffold(release.read_bytes()) if release.is_file() else ""
    return compare(lab, class_codes(course_dir, lab), release_code, threshold)
