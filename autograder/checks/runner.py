"""Run one lab's hidden checks for one submission, in this (trusted) process."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from autograder.checks.api import Misconception
from autograder.checks.plugin import Caller, CheckPlugin, SubmissionContext
from autograder.paths import rubrics_root
from autograder.records import CheckResult, Flag
from autograder.rubric import Rubric, rubric_dir


@cache
def _rubric_module(lab: str, stem: str) -> ModuleType | None:
    """rubrics/<lab>/<stem>.py imported under a private name (trusted course code), or None when absent."""
    path = rubric_dir(lab) / f"{stem}.py"
    if not path.is_file():
        return None
    name = f"sparkgrade_{stem}_" + lab.replace(".", "_").replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_misconceptions(lab: str) -> tuple[Misconception, ...]:
    """rubrics/<lab>/misconceptions.py: a module-level MISCONCEPTIONS list."""
    return tuple(getattr(_rubric_module(lab, "misconceptions"), "MISCONCEPTIONS", ()))


def load_references(lab: str) -> dict[str, Callable[..., Any]]:
    """misconceptions.py's REFERENCES: the course's answer per student function, with the student's signature.
    Diagnosis names a mutant only where it differs from this reference."""
    return dict(getattr(_rubric_module(lab, "misconceptions"), "REFERENCES", {}))


def load_mutants(lab: str) -> tuple[Misconception, ...]:
    """rubrics/<lab>/mutants.py: MUTANTS, wrong variants that are no diagnosable misconception (the mutation
    harness runs them with the catalogue's; diagnosis never names them)."""
    return tuple(getattr(_rubric_module(lab, "mutants"), "MUTANTS", ()))


def _forget_rubric_modules() -> None:
    """pytest imports check modules by file name; two labs may both have a test_benchmarks.py. Each run starts
    from the files on disk, so one lab's module never stands in for another's."""
    root = str(rubrics_root().resolve())
    for name, module in list(sys.modules.items()):
        if (getattr(module, "__file__", None) or "").startswith(root) and not name.startswith("sparkgrade_"):
            del sys.modules[name]


GPU_CHECK_FILES = "test_gpu_*.py"  # the rubric's gpu_checks: collected only when the rubric grades on the GPU


# Serves every check a rubric declares by its plausibility rules (rubric.yaml `rules:`), for every lab.
BENCHMARK_RULES_FILE = Path(__file__).with_name("benchmark_rules.py")


def check_files(lab: str, on_gpu: bool = False) -> list[Path]:
    """The lab's own check files (GPU ones only on the GPU)."""
    gpu = set(rubric_dir(lab).glob(GPU_CHECK_FILES))
    return sorted(p for p in rubric_dir(lab).glob("test_*.py") if on_gpu or p not in gpu)


def collected_files(rubric: Rubric) -> list[Path]:
    """What pytest collects for this rubric: the lab's check files, and the shared benchmark test if it declares
    rule checks."""
    shared = [BENCHMARK_RULES_FILE] if rubric.benchmark_rules else []
    return check_files(rubric.lab, rubric.on_gpu) + shared


# pytest's built-in plugins a grading session has no use for: the checks ask for the CheckPlugin's fixtures only (no
# tmp_path, monkeypatch, caplog, recwarn, unittest classes), and warnings are ignored (-W ignore). Each one costs
# option parsing, hook registration and fixture scanning in every submission's session.
UNUSED_PLUGINS = ("cacheprovider", "unraisableexception", "threadexception", "doctest", "junitxml", "pastebin",
                  "stepwise", "faulthandler", "logging", "legacypath", "tmpdir", "monkeypatch", "recwarn",
                  "setuponly", "setupplan", "unittest", "debugging", "subtests")


@dataclass(frozen=True)
class ChecksOutcome:
    results: list[CheckResult]
    grader_errors: list[str]
    flags: list[Flag]  # forbidden calls seen (rubric `forbid:`), whatever their policy; a spent time budget


def run_checks(rubric: Rubric, caller: Caller, seed: str, context: SubmissionContext,
               select: Sequence[str] | None = None) -> tuple[list[CheckResult], list[str]]:
    """Every check of the rubric, in rubric order; a check the rubric lists but pytest did not run is an error."""
    outcome = run_all_checks(rubric, caller, seed, context, select)
    return outcome.results, outcome.grader_errors


def apply_forbid(rubric: Rubric, results: list[CheckResult],
                 forbidden: dict[str, list[str]]) -> tuple[list[CheckResult], list[Flag]]:
    """The rubric's policy for each function seen calling what it must not: a forbidden-call flag always, and under
    ``zero`` none of that function's checks earns points (the lab exists so that students write it)."""
    flags: list[Flag] = []
    zeroed: dict[str, str] = {}
    for function, names in forbidden.items():
        spec = rubric.forbid.get(function)
        if spec is None or not names:
            continue
        what = ", ".join(names)
        consequence = f"no points for {function}" if spec.policy == "zero" else "for review"
        flags.append(Flag("forbidden-call", f"{function} called {what} (forbidden by the rubric; {consequence})"))
        if spec.policy == "zero":
            zeroed[function] = f"{function} calls {what}, which this lab forbids: the point is to write it yourself"
    out = [dataclasses.replace(r, points=0.0, status="failed", message=zeroed[r.function], diagnosis="", details={})
           if r.function in zeroed else r for r in results]
    return out, flags


def run_all_checks(rubric: Rubric, caller: Caller, seed: str, context: SubmissionContext,
                   select: Sequence[str] | None = None) -> ChecksOutcome:
    """run_checks, with the rubric's forbid policy applied and its flags."""
    plugin = CheckPlugin(rubric, caller, seed, context, load_misconceptions(rubric.lab), load_references(rubric.lab))
    args = [str(p) for p in collected_files(rubric)]
    # No plugin but ours: --disable-plugin-autoload keeps every pytest11 entry point installed beside the grader
    # (xdist, hypothesis, timeout, ...) out of the trusted check session: none may change how checks run, and
    # hypothesis's alone cost ~2.4 s of CPU per grading process to import. The ini file is the empty one, so no
    # pyproject.toml or pytest.ini found above the rubric (the repository's own test settings) applies either.
    args += ["-q", "--import-mode=importlib", "-c", os.devnull, "-o", "addopts=", "--disable-plugin-autoload",
             "--rootdir", str(rubric_dir(rubric.lab)), "-W", "ignore"]
    # Built-in plugins a grading session has no use for; unraisableexception alone spends ~0.3 s per submission in
    # repeated gc.collect() at exit.
    for name in UNUSED_PLUGINS:
        args += ["-p", f"no:{name}"]
    if select:
        args += ["-k", " or ".join(select)]
    _forget_rubric_modules()
    with contextlib.redirect_stdout(io.StringIO()) as out:
        code = pytest.main(args, plugins=[plugin])
    plugin.finish()
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        plugin.grader_errors.append(f"pytest exited with {code!r}: {out.getvalue()[-800:]}")
    results = []
    for cid, spec in rubric.checks.items():
        if select and cid not in select:
            continue
        results.append(plugin.results.get(cid) or CheckResult(
            cid, spec.function, 0.0, spec.points, "error", "the check did not run (missing from the rubric's tests)"))
    results, flags = apply_forbid(rubric, results, plugin.forbidden)
    if plugin.budget.refused:
        # The budget is wall-clock time, and a loaded machine spends it as surely as a slow submission: the zero
        # points stand (the batch must end), but a person decides whether to regrade when the machine is quiet.
        flags.append(Flag("time-budget", f"{plugin.budget.refused} call(s) of the student's functions were not made: "
                                         f"the checks used up their {plugin.budget.checks_s:.0f} s budget (if the "
                                         "machine was busy, regrade this submission with --force when it is not)"))
    return ChecksOutcome(results, plugin.grader_errors, flags)
