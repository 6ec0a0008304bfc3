"""The grader decides the profile a submission runs with: a notebook submitted with PROFILE = "spark" (the student ran
it on their own Spark) still runs the tiny profile in the offline sandbox, however its parameters cell was changed."""

from __future__ import annotations

import copy

import nbformat
import pytest

from autograder.intake.parameters import pin_parameters
from autograder.paths import assignments_root

LAB = "lab-2.4.2-mamba-architecture"


@pytest.fixture(scope="module")
def source() -> nbformat.NotebookNode:
    return nbformat.read(assignments_root() / "source" / LAB / f"{LAB}.ipynb", as_version=4)


def profile_seen_by_locked_cells(nb: nbformat.NotebookNode) -> str:
    """PROFILE as the first locked cell (the setup cell, which reads it) would see it: run the code before it."""
    ns: dict = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if (cell.metadata.get("nbgrader") or {}).get("locked"):
            return ns["PROFILE"]
        exec(compile(cell.source, "<cell>", "exec"), ns)
    raise AssertionError("no locked cell")


def with_params(source, edit) -> nbformat.NotebookNode:
    nb = copy.deepcopy(source)
    i = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    edit(nb, i)
    return nb


def spark_in_place(nb, i):
    nb.cells[i].source = nb.cells[i].source.replace('PROFILE = "tiny"', 'PROFILE = "spark"')


def spark_untagged(nb, i):
    spark_in_place(nb, i)
    nb.cells[i].metadata["tags"] = []


def spark_extra_cell(nb, i):
    nb.cells.insert(i + 1, nbformat.v4.new_code_cell('PROFILE = "spark"'))


def deleted(nb, i):
    del nb.cells[i]


@pytest.mark.parametrize("edit", [spark_in_place, spark_untagged, spark_extra_cell])
def test_a_spark_submission_runs_the_graders_tiny_profile(source, edit):
    submitted = with_params(source, edit)
    assert profile_seen_by_locked_cells(submitted) == "spark"  # ungraded, the student's choice would win
    pinned = pin_parameters(submitted, source)
    assert profile_seen_by_locked_cells(pinned) == "tiny"
    assert sum("parameters" in c.metadata.get("tags", []) for c in pinned.cells) == 1  # only the grader's is tagged
    assert len(pinned.cells) == len(submitted.cells) + 1  # the student's text stays for the feedback page


def test_a_deleted_parameters_cell_is_put_back_before_the_setup_cell(source):
    pinned = pin_parameters(with_params(source, deleted), source)
    assert profile_seen_by_locked_cells(pinned) == "tiny"


def test_the_grader_may_choose_another_profile_and_the_submission_is_not_modified(source):
    submitted = with_params(source, spark_in_place)
    before = nbformat.writes(submitted)
    assert profile_seen_by_locked_cells(pin_parameters(submitted, source, "spark")) == "spark"
    assert nbformat.writes(submitted) == before


def test_a_lab_without_parameters_is_left_as_it_is():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    assert pin_parameters(nb, nb).cells == nb.cells


def test_the_pinned_cell_gets_an_id_of_its_own(source, recwarn):
    """The student's parameters cell keeps the course's id: the pinned copy must not share it, or nbformat warns
    DuplicateCellId (and rewrites an id) on every write of the graded notebook."""
    pinned = pin_parameters(with_params(source, spark_in_place), source)
    ids = [c.get("id") for c in pinned.cells]
    assert len(ids) == len(set(ids)) == len(source.cells) + 1
    nbformat.validate(pinned)
    nbformat.writes(pinned)
    assert not [w for w in recwarn if "DuplicateCellId" in type(w.message).__name__]
