"""Every lab's hidden checks, proven on known answers without the sandbox (fast; the sandboxed path is proven in
test_engine.py and test_grading_labs.py):

- the source notebook's own solutions earn full marks;
- a second, independent correct implementation (the trusted reference) earns full marks too;
- every misconception in the lab's catalogue fails its function's checks, only those, and is named;
- each rubric lists exactly the checks its test files define.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import nbformat
import pytest
import torch

import reference
from autograder.checks.plugin import SubmissionContext
from autograder.checks.runner import check_files, load_misconceptions, run_checks
from autograder.paths import assignments_root, rubrics_root
from autograder.rubric import load_rubric
from autograder.sandbox import CallResult

FUNCTION_LABS = sorted(p.parent.name for p in rubrics_root().glob("*/misconceptions.py"))


class LocalCaller:
    """Calls plain Python functions in this process, copying tensors in and out as the sandbox would."""

    def __init__(self, namespace: dict) -> None:
        self.namespace = namespace

    def call(self, function, args=(), kwargs=None, *, timeout_s=None, device=None):
        fn = self.namespace.get(function)
        if fn is None:
            return CallResult("error", error=f"NameError: {function!r} is not defined", sandboxed=False)
        try:
            value = fn(*_copy(tuple(args)), **_copy(dict(kwargs or {})))
        except Exception as exc:
            return CallResult("error", error=f"{type(exc).__name__}: {exc}", sandboxed=False)
        return CallResult("ok", value=_copy(value), sandboxed=False)


def _copy(v):
    if isinstance(v, torch.Tensor):
        return v.detach().clone()
    if isinstance(v, list | tuple):
        return type(v)(_copy(x) for x in v)
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    return v


def solution_namespace(lab: str) -> dict:
    """The source notebook's solution cells, executed with the imports the lab's setup provides."""
    nb = nbformat.read(assignments_root() / "source" / lab / f"{lab}.ipynb", as_version=4)
    ns: dict = {"torch": torch, "F": torch.nn.functional, "math": math, "nn": torch.nn}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("solution"):
            exec(compile(cell.source, f"<{lab}:{meta['grade_id']}>", "exec"), ns)
    return ns


def grade_locally(lab: str, namespace: dict, seed: str = "test-seed"):
    rubric = load_rubric(lab)
    results, errors = run_checks(rubric, LocalCaller(namespace), seed, SubmissionContext("t", lab))
    assert not errors, errors
    return rubric, {r.id: r for r in results}


@pytest.mark.parametrize("lab", FUNCTION_LABS)
def test_source_solution_earns_full_marks(lab):
    rubric, results = grade_locally(lab, solution_namespace(lab))
    failed = {k: (r.message, r.diagnosis) for k, r in results.items() if r.status != "passed"}
    assert not failed
    assert sum(r.points for r in results.values()) == rubric.max_score


@pytest.mark.parametrize("lab", FUNCTION_LABS)
def test_reference_as_a_second_implementation_earns_full_marks(lab):
    ns = solution_namespace(lab)
    replaced = {name for name in list(ns) if callable(ns[name]) and hasattr(reference, name)}
    assert replaced, f"{lab}: no function of the reference package to swap in"
    ns.update({name: getattr(reference, name) for name in replaced})
    _, results = grade_locally(lab, ns)
    assert all(r.status == "passed" for r in results.values()), {k: r.message for k, r in results.items()
                                                                  if r.status != "passed"}


def _misconception_cases():
    for lab in FUNCTION_LABS:
        for m in load_misconceptions(lab):
            yield pytest.param(lab, m, id=f"{lab}:{m.function}:{m.name}")


@pytest.mark.parametrize(("lab", "misconception"), list(_misconception_cases()))
def test_each_misconception_is_caught_and_named(lab, misconception):
    ns = solution_namespace(lab)
    ns[misconception.function] = misconception.mutant
    _, results = grade_locally(lab, ns, seed=f"seed-{misconception.name}")
    failed = [r for r in results.values() if r.status != "passed"]
    assert failed, "the checks did not catch this mistake"
    assert {r.function for r in failed} == {misconception.function}, "a mistake in one function cost others"
    assert any(misconception.name in r.diagnosis for r in failed), [r.diagnosis for r in failed]


@pytest.mark.parametrize("lab", sorted(p.parent.name for p in rubrics_root().glob("*/rubric.yaml")))
def test_rubric_lists_exactly_the_checks_its_tests_define(lab):
    defined = set()
    for path in check_files(lab):
        tree = ast.parse(Path(path).read_text())
        defined |= {n.name.removeprefix("test_") for n in tree.body
                    if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}
    assert defined == set(load_rubric(lab).checks)
