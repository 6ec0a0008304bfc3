"""Read a submitted notebook as untrusted input and put its locked cells back the way the course wrote them.

nbgrader marks setup and test cells as locked and detects edits by checksum; we compare with the source notebook
directly (it is at hand), repair every locked cell that was edited or deleted, and flag what we repaired. The
student's solution cells are left exactly as they are.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import nbformat

from autograder.records import Flag

MAX_NOTEBOOK_BYTES = 50 * 1024 * 1024


class InvalidNotebook(ValueError):
    """The submission is not a notebook we can grade; the message is one line for the student."""


def read_submission(data: bytes) -> nbformat.NotebookNode:
    if len(data) > MAX_NOTEBOOK_BYTES:
        raise InvalidNotebook(f"the notebook is {len(data) / 1e6:.0f} MB, over the {MAX_NOTEBOOK_BYTES // 2**20} MiB "
                              "limit: clear large outputs and submit again")
    try:
        nb = nbformat.reads(data.decode("utf-8"), as_version=4)
        nbformat.validate(nb)
    except UnicodeDecodeError:
        raise InvalidNotebook("the notebook is not UTF-8 text: submit the .ipynb file Jupyter saved") from None
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidNotebook(f"the file is not a valid Jupyter notebook ({first[:200]})") from None
    return nb


def _meta(cell: nbformat.NotebookNode) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def _is_locked(cell: nbformat.NotebookNode) -> bool:
    m = _meta(cell)
    return bool(m.get("locked") or (m.get("grade") and not m.get("solution")))


@dataclass(frozen=True)
class Repair:
    notebook: nbformat.NotebookNode
    flags: tuple[Flag, ...]
    solution_ids: tuple[str, ...]  # grade_ids of the solution cells found in the submission


def repair_locked_cells(submitted: nbformat.NotebookNode, source: nbformat.NotebookNode) -> Repair:
    """Restore locked cells (by grade_id) from the source; flag each cell edited, deleted or retyped."""
    nb = copy.deepcopy(submitted)
    flags: list[Flag] = []
    by_id: dict[str, int] = {}
    for i, cell in enumerate(nb.cells):
        gid = _meta(cell).get("grade_id")
        if gid and gid not in by_id:
            by_id[gid] = i
        elif gid:
            flags.append(Flag("tampered", f"cell {gid!r} appears twice; the second copy was ignored by the grader"))
            cell.metadata.pop("nbgrader", None)
    last_pos = -1
    for src_cell in source.cells:
        gid = _meta(src_cell).get("grade_id")
        if not gid:
            continue
        if not _is_locked(src_cell):
            if gid not in by_id:
                flags.append(Flag("missing-cell", f"the answer cell {gid!r} is missing from the submission"))
            else:
                last_pos = by_id[gid]
            continue
        fresh = copy.deepcopy(src_cell)
        if src_cell.cell_type == "code":
            fresh.outputs, fresh.execution_count = [], None
        if gid not in by_id:
            last_pos += 1
            nb.cells.insert(last_pos, fresh)
            by_id = {(_meta(c).get("grade_id")): i for i, c in enumerate(nb.cells) if _meta(c).get("grade_id")}
            flags.append(Flag("tampered", f"locked cell {gid!r} was deleted; it was restored"))
            continue
        pos = by_id[gid]
        cell = nb.cells[pos]
        if cell.cell_type != src_cell.cell_type or cell.source != src_cell.source or not _is_locked(cell):
            nb.cells[pos] = fresh
            flags.append(Flag("tampered", f"locked cell {gid!r} was edited; the original was restored"))
        last_pos = pos
    solution_ids = tuple(_meta(c).get("grade_id") for c in nb.cells
                         if _meta(c).get("solution") and _meta(c).get("grade_id"))
    return Repair(nb, tuple(flags), solution_ids)
