"""Which cells of a submission the grader runs.

The hidden checks only need the student's functions and what they are built from. A rubric may therefore ask for
``execute: definitions``: the grader runs the course's setup cells the rubric names, the parameters cell, every
solution cell, and each cell of the student's own that only defines things (imports, functions, classes,
assignments); experiment and plotting cells are not re-run and keep the outputs the student submitted. The default,
``execute: all``, runs the whole notebook as nbgrader does.

Pure functions of notebooks: select, cut the notebook down, and merge the executed outputs back.
"""

from __future__ import annotations

import ast
import copy
from typing import Any

import nbformat

from autograder.intake.notebook import parse_cell

DEFINITION_NODES = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign,
                    ast.AnnAssign)


def _meta(cell: nbformat.NotebookNode) -> dict[str, Any]:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def only_definitions(source: str) -> bool:
    """Imports, defs, classes, assignments and docstrings only: running it defines names and does nothing else."""
    tree = parse_cell(source)
    if tree is None:
        return False  # not parseable here (magics, broken, or shaped to exhaust the parser): run it as it is
    return all(isinstance(node, DEFINITION_NODES) or (isinstance(node, ast.Expr) and isinstance(node.value,
               ast.Constant)) for node in tree.body)


def select_cells(nb: nbformat.NotebookNode, mode: str, setup_cells: list[str]) -> list[int]:
    """Indices of the code cells to run, in notebook order."""
    picked = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        meta = _meta(cell)
        if mode == "all":
            picked.append(i)
        elif ("parameters" in cell.metadata.get("tags", []) or meta.get("grade_id") in setup_cells
              or (meta.get("solution") and not meta.get("grade"))):
            picked.append(i)
        elif not meta and only_definitions(cell.source):
            picked.append(i)
    return picked


def reduced(nb: nbformat.NotebookNode, indices: list[int]) -> nbformat.NotebookNode:
    out = copy.deepcopy(nb)
    out.cells = [copy.deepcopy(nb.cells[i]) for i in indices]
    return out


def merge(full: nbformat.NotebookNode, executed: nbformat.NotebookNode, indices: list[int]) -> nbformat.NotebookNode:
    """The full notebook with the executed cells' fresh outputs; cells not run keep what the student submitted."""
    out = copy.deepcopy(full)
    if len(executed.cells) != len(indices):
        return out  # the sandbox wrote something else back: keep the submission's own outputs
    for i, cell in zip(indices, executed.cells, strict=True):
        if cell.cell_type == "code" and out.cells[i].cell_type == "code":
            out.cells[i].outputs = cell.get("outputs", [])
            out.cells[i].execution_count = cell.get("execution_count")
    return out


def raised(notebook: bytes | None, ename: str) -> bool:
    """Whether an executed notebook (untrusted bytes from the sandbox) shows an error output named ``ename``."""
    if not notebook:
        return False
    try:
        nb = nbformat.reads(notebook.decode("utf-8"), as_version=4)
    except Exception:  # unreadable: the caller grades what it has
        return False
    return any(out.get("output_type") == "error" and out.get("ename") == ename
               for cell in nb.cells if cell.get("cell_type") == "code" for out in cell.get("outputs", []))
