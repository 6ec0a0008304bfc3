"""Same work, same grade: grade the same submissions N times (``--force``), idle and with every core kept busy by a
load generator, and report every (lab, student, check) whose verdict changed between repetitions.

The submissions are, per lab, the course's answer and one per entry of the lab's misconception catalogue
(misconceptions.py) and mutants list (mutants.py): the released notebook with the course's answers, where the
mutated function's cell also holds the mutant's source, bound to the function's name. Only source crosses into the
sandbox, so a mutant is written out with what it uses: helper functions of its module (recursively), simple
constants and modules it names, and the course's answer where it calls the reference function of the same name. A
mutant that needs anything else (a class, an object) is listed as not covered.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/reproducibility.py --reps 10 [--labs LAB ...] [--no-sandbox]
        [--phases idle loaded] [--workers 2] [--course DIR] [--students REGEX] [--json OUT]

SPARKGRADE_MODEL_CACHE=DIR reuses a build of the tiny models (the tests' /tmp/sparkgrade-test-models) instead of
building them into the course.

Not part of the test suite: a full run takes hours on 2 cores.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import inspect
import json
import multiprocessing
import os
import re
import sys
import tempfile
import time
import types
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autograder.batch import grade_course  # noqa: E402
from autograder.course.create import init_course  # noqa: E402
from autograder.course.demo import write_submission  # noqa: E402
from autograder.paths import rubrics_root  # noqa: E402
from autograder.rubric import load_rubric, rubric_dir  # noqa: E402

COURSE_PREFIX = "_sg_course_"
LITERALS = (int, float, str, bool, type(None), tuple, frozenset)
OWN_PACKAGES = {"autograder", "reference", "assignments"}  # not visible inside the sandbox


class NotCovered(Exception):
    """The mutant uses something that cannot be written out as notebook source."""


def _module(lab: str, name: str) -> types.ModuleType | None:
    path = rubric_dir(lab) / f"{name}.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location(f"sg_repro_{name}_{lab.replace('.', '_').replace('-', '_')}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def catalogue(lab: str) -> list[tuple[str, Any]]:
    """(kind, Misconception) for the lab's misconceptions and mutants."""
    out = []
    for name, attr, kind in (("misconceptions", "MISCONCEPTIONS", "mc"), ("mutants", "MUTANTS", "mut")):
        module = _module(lab, name)
        out += [(kind, m) for m in getattr(module, attr, ())] if module else []
    return out


def _function_source(fn: types.FunctionType) -> ast.FunctionDef:
    """The function's definition without annotations (the notebook need not import what they name); a lambda
    becomes the def it stands for."""
    if fn.__name__ == "<lambda>":
        path = inspect.getsourcefile(fn)
        tree = ast.parse(Path(path).read_text()) if path else None
        found = [n for n in ast.walk(tree) if isinstance(n, ast.Lambda)
                 and n.lineno == fn.__code__.co_firstlineno] if tree else []
        if len(found) != 1:
            raise NotCovered("its lambda cannot be told apart from others on the same line")
        node = ast.FunctionDef(name="_lambda", args=found[0].args, body=[ast.Return(found[0].body)],
                               decorator_list=[], returns=None, type_params=[])
        return ast.fix_missing_locations(node)
    tree = ast.parse(inspect.getsource(fn).lstrip())
    node = tree.body[0]
    if not isinstance(node, ast.FunctionDef):
        raise NotCovered(f"{fn.__name__} is not defined by a def statement")
    node.decorator_list = []
    node.returns = None
    for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs, node.args.vararg, node.args.kwarg]:
        if arg is not None:
            arg.annotation = None
    return node


def _global_names(node: ast.FunctionDef) -> set[str]:
    """Names the function reads that it does not bind itself."""
    loaded = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    bound = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    bound |= {a.arg for a in ast.walk(node) if isinstance(a, ast.arg)}
    bound |= {n.name for n in ast.walk(node) if isinstance(n, ast.FunctionDef | ast.ClassDef) and n is not node}
    return loaded - bound


def _rename(source: str, names: dict[str, str]) -> str:
    for old, new in names.items():
        source = re.sub(rf"(?<![\w.]){re.escape(old)}\b", new, source)
    return source


def mutant_source(mutant: Callable[..., Any], function: str, student_functions: set[str]) -> str:
    """Source text that defines ``function`` as ``mutant`` next to the course's answers (see the module doc)."""
    blocks: list[str] = []
    seen: set[str] = set()
    renames = {name: COURSE_PREFIX + name for name in student_functions}

    def include(fn: Any, as_name: str) -> None:
        if as_name in seen:
            return
        seen.add(as_name)
        if not isinstance(fn, types.FunctionType):
            raise NotCovered(f"{as_name} is a {type(fn).__name__}, not a function")
        node = _function_source(fn)
        # A closure's free variables become module constants of the written-out source.
        free = dict(zip(fn.__code__.co_freevars, (c.cell_contents for c in fn.__closure__ or ()), strict=True))
        for name in sorted(_global_names(node)):
            if name in seen or name in student_functions or (name not in fn.__globals__ and name not in free):
                continue  # the course's answer is kept under its own name (renamed below); builtins stay
            value = free[name] if name in free else fn.__globals__[name]
            if isinstance(value, types.ModuleType):
                seen.add(name)
                blocks.insert(0, f"import {value.__name__} as {name}")
            elif isinstance(value, types.FunctionType):
                include(value, name)
            elif isinstance(getattr(value, "__wrapped__", None), types.FunctionType):  # functools.cache and kin
                include(value.__wrapped__, name)
            elif isinstance(value, type) and value.__module__.split(".")[0] not in OWN_PACKAGES:
                seen.add(name)
                blocks.insert(0, f"from {value.__module__} import {value.__qualname__} as {name}")
            elif isinstance(value, type):  # a grader type (e.g. Model): no value in the sandbox is an instance
                seen.add(name)
                blocks.insert(0, f"class {name}:\n    pass")
            elif type(value) is object:  # a sentinel
                seen.add(name)
                blocks.insert(0, f"{name} = object()")
            elif isinstance(value, LITERALS) or (isinstance(value, dict | list) and len(repr(value)) < 4000):
                seen.add(name)
                blocks.insert(0, f"{name} = {value!r}")
            else:
                raise NotCovered(f"it uses {name}, a {type(value).__name__} of the grader")
        node.name = as_name
        blocks.append(_rename(ast.unparse(node), renames))

    include(mutant, f"_sg_mutant_{function}")
    text = "\n\n".join(blocks)
    aliases = "\n".join(f"{COURSE_PREFIX}{name} = {name}" for name in sorted(student_functions) if name in text)
    ast.parse(text)
    return f"\n\n# -- the mutant, bound to {function} --\n{aliases}\n\n{text}\n\n{function} = _sg_mutant_{function}\n"


def _solution_cells(notebook: Path) -> dict[str, str]:
    nb = nbformat.read(notebook, as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code"}


def build_class(course: Path, lab: str, only: re.Pattern[str] | None = None) -> tuple[list[str], list[str]]:
    """Write the submissions (those whose name ``only`` matches, when given); returns (students, notes on what is
    not covered)."""
    cells = _solution_cells(course / "source" / lab / f"{lab}.ipynb")
    defines = {cid: {n.name for n in ast.parse(src).body if isinstance(n, ast.FunctionDef)}
               for cid, src in cells.items()}
    student_functions = {c.function for c in load_rubric(lab).checks.values()} & set().union(*defines.values())
    when = datetime.now(UTC)
    write_submission(course, lab, "answer", {"source": list(cells)}, when)
    students, notes = ["answer"], []
    for i, (kind, m) in enumerate(catalogue(lab)):
        student = f"{kind}{i:02d}-{re.sub(r'[^a-z0-9]+', '-', m.name.lower()).strip('-')}"[:60]
        if only is not None and not only.search(student):
            continue
        cell = next((cid for cid, names in defines.items() if m.function in names), None)
        try:
            if cell is None:
                raise NotCovered(f"no solution cell defines {m.function}")
            extra = mutant_source(m.mutant, m.function, student_functions)
        except (NotCovered, OSError, TypeError, SyntaxError) as exc:
            notes.append(f"{lab} {kind} {m.function} '{m.name}': not covered ({exc})")
            continue
        write_submission(course, lab, student, {"source": list(cells), "code": {cell: cells[cell] + extra}}, when)
        students.append(student)
    return students, notes


def _busy(stop_at: float) -> None:
    x = 0
    while time.time() < stop_at:
        x += 1


def grade_all(course: Path, labs: list[str], no_sandbox: bool, workers: int) -> dict[str, str]:
    """{"lab|student|check": status} of one repetition (--force: every submission is graded again)."""
    verdicts: dict[str, str] = {}
    for lab in labs:
        for record in grade_course(course, lab, force=True, no_sandbox=no_sandbox, workers=workers):
            if record.status != "graded":
                verdicts[f"{lab}|{record.student}|(submission)"] = f"{record.status}: {record.reason}"[:80]
            for check in record.checks:
                verdicts[f"{lab}|{record.student}|{check.id}"] = check.status
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=10)
    labs = sorted(p.parent.name for p in rubrics_root().glob("*/rubric.yaml"))
    parser.add_argument("--labs", nargs="*", default=labs)
    parser.add_argument("--phases", nargs="*", default=["idle", "loaded"], choices=["idle", "loaded"])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--no-sandbox", action="store_true", help="where bubblewrap cannot start (marks the run)")
    parser.add_argument("--course", help="course folder to build (default: a temporary one)")
    parser.add_argument("--json", help="write every verdict of every repetition here")
    parser.add_argument("--students", help="regex: grade only the catalogue entries whose submission name matches "
                                           "(e.g. 'benchmark'; the course's answer is always graded)")
    args = parser.parse_args()
    course = Path(args.course or tempfile.mkdtemp(prefix="sg-repro-"))
    init_course(course, args.labs)
    students, notes = {}, []
    for lab in args.labs:
        students[lab], lab_notes = build_class(course, lab, re.compile(args.students) if args.students else None)
        notes += lab_notes
    print(f"course {course}: " + ", ".join(f"{lab} {len(s)} submissions" for lab, s in students.items()), flush=True)
    runs: dict[str, list[dict[str, str]]] = {}
    seconds: dict[str, float] = {}
    for phase in args.phases:
        load: list[multiprocessing.Process] = []
        start = time.perf_counter()
        if phase == "loaded":  # every core busy for the whole phase (bounded: the processes stop themselves)
            stop_at = time.time() + 6 * 3600
            load = [multiprocessing.Process(target=_busy, args=(stop_at,), daemon=True)
                    for _ in range(os.cpu_count() or 2)]
            for p in load:
                p.start()
        try:
            for rep in range(args.reps):
                runs.setdefault(phase, []).append(grade_all(course, args.labs, args.no_sandbox, args.workers))
                print(f"{phase}: repetition {rep + 1}/{args.reps} done ({time.perf_counter() - start:.0f} s)",
                      flush=True)
        finally:
            for p in load:
                p.terminate()
                p.join()
        seconds[phase] = time.perf_counter() - start
        if args.json:
            Path(args.json).write_text(json.dumps({"runs": runs, "seconds": seconds, "notes": notes}))
    report(runs, seconds, students, notes, args.no_sandbox)


def report(runs: dict[str, list[dict[str, str]]], seconds: dict[str, float], students: dict[str, list[str]],
           notes: list[str], no_sandbox: bool) -> None:
    print(f"\nverdicts per repetition{' (--no-sandbox: the sandbox could not start here)' if no_sandbox else ''}")
    print(f"{'phase':7} {'reps':>4} {'seconds':>8} {'verdicts':>9} {'changed':>8}")
    changed_all: dict[str, dict[str, set[str]]] = {}
    for phase, reps in runs.items():
        keys = set().union(*reps)
        changed = {k: {r.get(k, "missing") for r in reps} for k in keys}
        changed = {k: v for k, v in changed.items() if len(v) > 1}
        changed_all[phase] = changed
        print(f"{phase:7} {len(reps):4} {seconds[phase]:8.0f} {len(keys):9} {len(changed):8}")
    for lab, names in students.items():
        print(f"  {lab}: {len(names)} submissions (the answer + {len(names) - 1} catalogue entries)")
    for phase, changed in changed_all.items():
        for key, values in sorted(changed.items()):
            counts = {v: sum(r.get(key, "missing") == v for r in runs[phase]) for v in values}
            print(f"CHANGED {phase}: {key}: {counts}")
    for note in notes:
        print("NOT COVERED", note)


if __name__ == "__main__":
    main()
