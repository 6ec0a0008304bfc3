"""Read a submitted notebook as untrusted input and put its locked cells back the way the course wrote them.

nbgrader marks setup and test cells as locked and detects edits by checksum; we compare with the source notebook
directly (it is at hand), repair every locked cell that was edited or deleted, and flag what we repaired. The
student's solution cells are left exactly as they are.
"""

from __future__ import annotations

import ast
import copy
from dataclasses import dataclass
from typing import Any

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
        nb: nbformat.NotebookNode = nbformat.reads(data.decode("utf-8"), as_version=4)
        nbformat.validate(nb)
    except UnicodeDecodeError:
        raise InvalidNotebook("the notebook is not UTF-8 text: submit the .ipynb file Jupyter saved") from None
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidNotebook(f"the file is not a valid Jupyter notebook ({first[:200]})") from None
    return nb


def parse_cell(source: str) -> ast.Module | None:
    """The cell's syntax tree, or None when Python cannot parse it here: IPython magics or broken code (SyntaxError,
    ValueError for a NUL byte), and sources shaped to exhaust the parser: `x = 1+1+...+1` with 100,000 terms
    raises RecursionError, a deeply nested literal MemoryError ("too many nested parentheses"). None of these may
    leave the intake: the kernel's own run shows what is wrong with the cell."""
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _meta(cell: nbformat.NotebookNode) -> dict[str, Any]:
    meta = cell.get("metadata", {}).get("nbgrader", {}) or {}
    return meta if isinstance(meta, dict) else {}


def _grade_id(cell: nbformat.NotebookNode) -> str:
    """The cell's nbgrader grade_id; "" when it has none, or when a student wrote something else than a string."""
    gid = _meta(cell).get("grade_id")
    return gid if isinstance(gid, str) else ""


def _is_locked(cell: nbformat.NotebookNode) -> bool:
    m = _meta(cell)
    return bool(m.get("locked") or (m.get("grade") and not m.get("solution")))


@dataclass(frozen=True)
class Repair:
    notebook: nbformat.NotebookNode
    flags: tuple[Flag, ...]
    solution_ids: tuple[str, ...]  # grade_ids of the solution cells found in the submission


def _fresh_id(used: set[str]) -> str:
    """A cell id no other cell has: a restored cell keeps the course's id unless the student's copy of it (with
    its metadata stripped) still carries it, which nbformat would report as DuplicateCellId on every write."""
    from nbformat.corpus.words import generate_corpus_id

    while (new := str(generate_corpus_id())) in used:
        pass
    return new


def repair_locked_cells(submitted: nbformat.NotebookNode, source: nbformat.NotebookNode) -> Repair:
    """Restore locked cells (by grade_id) from the source; flag each cell edited, deleted or retyped, saying what
    the grader ran instead. A notebook with none of the course's cell metadata gets one flag that says so, not one
    per cell."""
    nb = copy.deepcopy(submitted)
    flags: list[Flag] = []
    by_id: dict[str, int] = {}
    for i, cell in enumerate(nb.cells):
        gid = _grade_id(cell)
        if gid and gid not in by_id:
            by_id[gid] = i
        elif gid:
            first = by_id[gid] + 1
            if _is_locked(cell):
                what = ("the first is the course's cell (checked against the original); the second ran as ordinary "
                        "code after it")
            else:
                what = "both ran in order, so what the second copy defines is what was graded"
            flags.append(Flag("tampered", f"cell {gid!r} appears twice (cells {first} and {i + 1}, counting from "
                                          f"1): {what}"))
            cell.metadata.pop("nbgrader", None)
    source_ids = [_grade_id(c) for c in source.cells if _grade_id(c)]
    stripped = bool(source_ids) and not any(gid in by_id for gid in source_ids)
    used_ids = {c.get("id") for c in nb.cells if c.get("id")}
    restored = 0
    last_pos = -1
    for src_cell in source.cells:
        gid = _grade_id(src_cell)
        if not gid:
            continue
        if not _is_locked(src_cell):
            if gid not in by_id:
                if not stripped:
                    flags.append(Flag("missing-cell", f"the answer cell {gid!r} is missing from the submission: "
                                                      "the grader ran the notebook without it"))
            else:
                last_pos = by_id[gid]
            continue
        fresh = copy.deepcopy(src_cell)
        if src_cell.cell_type == "code":
            fresh.outputs, fresh.execution_count = [], None
        if fresh.get("id") in used_ids:
            fresh["id"] = _fresh_id(used_ids)
        if fresh.get("id"):
            used_ids.add(fresh["id"])
        if gid not in by_id:
            last_pos += 1
            nb.cells.insert(last_pos, fresh)
            by_id = {_grade_id(c): i for i, c in enumerate(nb.cells) if _grade_id(c)}
            restored += 1
            if not stripped:
                flags.append(Flag("tampered", f"locked cell {gid!r} was deleted: the course's original was put "
                                              "back and ran in its place"))
            continue
        pos = by_id[gid]
        cell = nb.cells[pos]
        if cell.cell_type != src_cell.cell_type or cell.source != src_cell.source or not _is_locked(cell):
            nb.cells[pos] = fresh
            flags.append(Flag("tampered", f"locked cell {gid!r} was edited: the course's original ran instead of "
                                          "the edited copy"))
        last_pos = pos
    if stripped:
        flags.append(Flag("metadata-stripped", (
            "the notebook has none of the course's nbgrader cell metadata (an editor or a copy into a new notebook "
            "removes it): your cells ran as you wrote them, after the course's "
            f"{restored} locked cells, which were put back at the top; the hidden checks graded the functions your "
            "cells define")))
    solution_ids = tuple(_grade_id(c) for c in nb.cells
                         if _meta(c).get("solution") and _grade_id(c))
    return Repair(nb, tuple(flags), solution_ids)


# What honest lab code has no reason to do. Finding one changes no points (the grade comes from outside the
# sandbox either way); it is flagged so an instructor can look.
_PATCHED_MODULES = ("testing", "allclose", "assert_close", "assert_allclose", "isclose", "equal", "builtins")
_PROBES = {
    "socket": "opens network sockets", "urllib": "fetches URLs", "requests": "fetches URLs",
    "http": "talks HTTP", "ctypes": "calls C directly",
}
_INTROSPECTION = {("inspect", "stack"), ("sys", "_getframe"), ("gc", "get_objects"), ("gc", "get_referrers"),
                  ("inspect", "currentframe")}
# The harness traces forbidden calls with a profile hook (rubric `forbid:`); code that sets its own hides from it.
_TRACERS = {("sys", "setprofile"), ("sys", "settrace"), ("threading", "setprofile")}


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def suspicious_code(nb: nbformat.NotebookNode, source: nbformat.NotebookNode) -> tuple[Flag, ...]:
    """Patching comparison helpers, searching the stack or heap, probing the network, reading the environment:
    one flag per finding in the code the student wrote (cells the course wrote, e.g. the parameters cell, are not
    the student's)."""
    course_cells = {c.source for c in source.cells}
    findings: list[str] = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or _is_locked(cell) or cell.source in course_cells:
            continue
        tree = parse_cell(cell.source)
        if tree is None:
            continue  # IPython magics, broken or parser-exhausting code: the run shows it
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign | ast.AugAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    name = _dotted(t)
                    if "." in name and any(p in name.split(".") for p in _PATCHED_MODULES):
                        findings.append(f"cell {index}: replaces {name}")
            elif isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for n in names:
                    if n.split(".")[0] in _PROBES:
                        findings.append(f"cell {index}: imports {n} ({_PROBES[n.split('.')[0]]})")
            elif isinstance(node, ast.Attribute):
                name = _dotted(node)
                pair = tuple(name.split(".")[-2:])
                if pair in _INTROSPECTION:
                    findings.append(f"cell {index}: uses {name} (searching the caller's frames or the heap)")
                elif pair in _TRACERS:
                    findings.append(f"cell {index}: uses {name} (replacing the grader's call tracer)")
                elif name in ("os.environ", "os.getenv"):
                    findings.append(f"cell {index}: reads the environment ({name})")
    unique = list(dict.fromkeys(findings))
    return tuple(Flag("suspicious-code", f) for f in unique[:20])
