"""Build nbgrader source notebooks from Python: one small function per nbgrader cell type.

Each lab has a builder script (assignments/labs/<lab-id>.py) that lists its cells with these helpers and writes
assignments/source/<lab-id>/<lab-id>.ipynb. The generated notebooks are committed; rebuild them with
`python assignments/build.py`. nbgrader cell metadata follows nbgrader's schema version 3.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

SCHEMA_VERSION = 3


def _clean(src: str) -> str:
    return textwrap.dedent(src).strip("\n")


def _meta(grade_id: str, *, grade: bool, solution: bool, locked: bool, points: float | None = None) -> dict:
    meta = {"grade": grade, "solution": solution, "locked": locked, "task": False,
            "grade_id": grade_id, "schema_version": SCHEMA_VERSION}
    if grade:
        meta["points"] = points or 0
    return {"nbgrader": meta}


def md(src: str) -> nbformat.NotebookNode:
    """Plain teaching text (not tracked by nbgrader)."""
    return new_markdown_cell(_clean(src))


def code(src: str, *, tags: list[str] | None = None) -> nbformat.NotebookNode:
    """Plain code the student may edit freely (plots, experiments)."""
    cell = new_code_cell(_clean(src))
    if tags:
        cell.metadata["tags"] = tags
    return cell


def locked(grade_id: str, src: str, *, markdown: bool = False, tags: list[str] | None = None) -> nbformat.NotebookNode:
    """Read-only cell: setup, helpers the lab provides. Tampering is repaired and flagged by the grader."""
    cell = (new_markdown_cell if markdown else new_code_cell)(_clean(src))
    cell.metadata.update(_meta(grade_id, grade=False, solution=False, locked=True))
    if tags:
        cell.metadata["tags"] = tags
    return cell


def solution(function_name: str, src: str) -> nbformat.NotebookNode:
    """The student's implementation of one function. grade_id == function name (docs/contracts.md, "The submission").
    `src` holds the reference answer between `### BEGIN SOLUTION` / `### END SOLUTION`."""
    cell = new_code_cell(_clean(src))
    cell.metadata.update(_meta(function_name, grade=False, solution=True, locked=False))
    return cell


def visible_tests(grade_id: str, src: str, *, points: float = 0) -> nbformat.NotebookNode:
    """Locked tests the student can run before submitting. Points shown in formgrader come from the hidden checks."""
    cell = new_code_cell(_clean(src))
    cell.metadata.update(_meta(grade_id, grade=True, solution=False, locked=True, points=points))
    return cell


def written(grade_id: str, prompt: str, *, points: float, model_answer: str = "YOUR ANSWER HERE",
            ) -> list[nbformat.NotebookNode]:
    """A written question (locked prompt) and its manually graded answer cell. The source holds a model answer;
    nbgrader's release replaces it with YOUR ANSWER HERE."""
    question = new_markdown_cell(_clean(prompt))
    question.metadata.update(_meta(f"{grade_id}-question", grade=False, solution=False, locked=True))
    answer = new_markdown_cell(_clean(model_answer))
    answer.metadata.update(_meta(grade_id, grade=True, solution=True, locked=False, points=points))
    return [question, answer]


RUBRICS = Path(__file__).resolve().parents[1] / "rubrics"


def rubric_function_points(lab: str) -> dict[str, float]:
    """Points per student function, summed over the lab's hidden checks (rubrics/<lab>/rubric.yaml)."""
    import yaml

    path = RUBRICS / lab / "rubric.yaml"
    if not path.is_file():
        return {}
    totals: dict[str, float] = {}
    for spec in yaml.safe_load(path.read_text())["checks"].values():
        totals[spec["function"]] = totals.get(spec["function"], 0) + spec["points"]
    return totals


def write(path: str | Path, cells: list, *, title: str) -> Path:
    """Write a notebook with a python3 kernelspec; cells may be nested lists (written() returns two).

    A visible-test cell ``test_<function>`` carries the points of its function's hidden checks, read from the
    lab's rubric: the rubric is the one place points are set, and formgrader shows the same numbers."""
    flat: list = []
    for c in cells:
        flat.extend(c if isinstance(c, list) else [c])
    totals = rubric_function_points(Path(path).stem)
    for cell in flat:
        meta = cell.metadata.get("nbgrader", {})
        fn = meta.get("grade_id", "").removeprefix("test_")
        if meta.get("grade") and not meta.get("solution") and fn in totals:
            meta["points"] = totals[fn]
    for i, cell in enumerate(flat):  # stable ids: a rebuild with the same content changes nothing
        gid = cell.metadata.get("nbgrader", {}).get("grade_id", "")
        cell["id"] = (f"c{i:03d}-" + "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in gid))[:64].rstrip("-")
    nb = new_notebook(cells=flat)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["title"] = title
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return path
