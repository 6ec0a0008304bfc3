"""The grader, not the submission, decides the parameters a notebook runs with.

A lab's parameters cell (tagged ``parameters``, papermill style) is the one code cell a student may edit and still
be graded: on their own Spark they set ``PROFILE = "spark"``. Graded as submitted, that would make the sandbox load
the hub checkpoints on CUDA, offline, and fail (or spend minutes) for a reason that is no mistake of theirs. So the
grader puts the course's own parameters cell back, with the profile it chose, right before the first locked cell
that follows it in the source: whatever the student's copy (tagged, untagged, moved, deleted) set, the locked cells
read the grader's values.
"""

from __future__ import annotations

import copy
import re

import nbformat

PROFILE_LINE = re.compile(r'^PROFILE\s*=.*$', re.M)
GRADER_PROFILE = "tiny"  # the sandbox is offline and the checks call functions: the tiny models are enough


def _tags(cell: nbformat.NotebookNode) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []) or [])


def _grade_id(cell: nbformat.NotebookNode) -> str | None:
    meta = cell.get("metadata", {}).get("nbgrader", {}) or {}
    return meta.get("grade_id") if meta.get("locked") else None


def pin_parameters(nb: nbformat.NotebookNode, source: nbformat.NotebookNode,
                   profile: str = GRADER_PROFILE) -> nbformat.NotebookNode:
    """A copy of ``nb`` whose parameters are the source's, with ``PROFILE`` set to ``profile``. A lab without a
    parameters cell (or without a PROFILE in it) is returned unchanged but for the copy."""
    out = copy.deepcopy(nb)
    at = next((i for i, c in enumerate(source.cells) if "parameters" in _tags(c)), None)
    if at is None or not PROFILE_LINE.search(source.cells[at].source):
        return out
    pinned = copy.deepcopy(source.cells[at])
    pinned.source = PROFILE_LINE.sub(f"PROFILE = {profile!r}  # set by the grader", pinned.source, count=1)
    pinned.outputs, pinned.execution_count = [], None
    # A fresh cell id: the student's copy of this cell keeps the course's id, and two equal ids make nbformat
    # warn (DuplicateCellId) on every write of the notebook.
    used = {c.get("id") for c in out.cells}
    if "id" in pinned:  # (notebooks before format 4.5 have no cell ids)
        pinned["id"] = next(f"sparkgrade-parameters-{n}" for n in range(len(used) + 1)
                            if f"sparkgrade-parameters-{n}" not in used)
    # The student's parameters cells keep their text for the feedback page but lose the tag: only ours is run as
    # the parameters in a definitions-only run, and ours comes after theirs.
    for cell in out.cells:
        if "parameters" in _tags(cell):
            cell.metadata["tags"] = [t for t in _tags(cell) if t != "parameters"]
    anchor = next((_grade_id(c) for c in source.cells[at + 1:] if _grade_id(c)), None)
    where = next((i for i, c in enumerate(out.cells) if anchor is not None and _grade_id(c) == anchor), None)
    out.cells.insert(where if where is not None else min(at, len(out.cells)), pinned)
    return out
