"""Grade one submission: the ordered steps it takes, from untrusted bytes to a GradeRecord.

    read (untrusted bytes -> notebook, or "invalid")
    -> repair locked cells from the source, flag tampering
    -> run the notebook in its own sandbox (kernel inside; the executed notebook comes back)
    -> hidden checks in this process, calling the student's functions in that sandbox
    -> score from the rubric

A submission that fails at any step gets a record saying why. Finding, scheduling and storing many submissions is
the batch's business (autograder/batch.py).
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

from autograder.checks.plugin import SubmissionContext
from autograder.checks.runner import run_checks
from autograder.intake import cells as execution
from autograder.intake.cells import select_cells
from autograder.intake.notebook import (
    InvalidNotebook,
    read_submission,
    repair_locked_cells,
    suspicious_code,
)
from autograder.intake.submission import Submission
from autograder.paths import assignments_root, check_lab
from autograder.records import CheckResult, Flag, GradeRecord
from autograder.rubric import Rubric, load_rubric
from autograder.sandbox import Sandbox


@dataclass(frozen=True)
class LabContext:
    """What grading one lab needs, resolved once per batch."""

    lab: str
    rubric: Rubric
    source: nbformat.NotebookNode
    models_dir: Path | None
    hardware: str
    no_sandbox: bool = False
    gpu: int | None = None


def lab_source_dir(course_dir: Path | None, lab: str) -> Path:
    """The course's own copy of the lab when it has one (an instructor may have edited it), else the product's."""
    if course_dir is not None and (course_dir / "source" / lab / f"{lab}.ipynb").is_file():
        return course_dir / "source" / lab
    return assignments_root() / "source" / lab


def load_lab(course_dir: Path | None, lab: str, *, no_sandbox: bool = False, hardware: str | None = None,
             models_dir: Path | None = None) -> LabContext:
    check_lab(lab)
    rubric = load_rubric(lab)
    src_dir = lab_source_dir(course_dir, lab)
    source = nbformat.read(src_dir / f"{lab}.ipynb", as_version=4)
    if models_dir is None and (src_dir / "models").is_dir():
        models_dir = src_dir / "models"
    return LabContext(lab, rubric, source, models_dir, hardware or rubric.hardware, no_sandbox)


def _zero(rubric: Rubric, message: str) -> tuple[CheckResult, ...]:
    return tuple(CheckResult(cid, spec.function, 0.0, spec.points, "error", message)
                 for cid, spec in rubric.checks.items())


def benchmark_flags(data: bytes | None, hardware: str) -> list[Flag]:
    """Suspicious (not impossible) benchmark numbers cost no points: they are flagged for a person to look at.
    Impossible ones are already scored by the lab's benchmark checks."""
    if not data:
        return []
    from autograder.plausibility import check_benchmarks, parse_records
    from reference.hardware import get_profile

    try:
        records = parse_records(json.loads(data))
        verdicts = check_benchmarks(records, get_profile(hardware))
    except Exception:
        return []  # a malformed file is the benchmark checks' business; they say why
    return [Flag("suspicious-benchmark", v.message[:500]) for v in verdicts if v.severity == "suspicious"][:10]


def _merged(full: nbformat.NotebookNode, executed: bytes | None, cells: list[int]) -> bytes:
    """The whole notebook with the outputs of the cells that ran (read back as untrusted input)."""
    try:
        run = read_submission(executed) if executed else None
    except InvalidNotebook:
        run = None
    merged = execution.merge(full, run, cells) if run is not None else full
    return nbformat.writes(merged).encode()


def _execute_and_check(sub: Submission, ctx: LabContext, notebook: nbformat.NotebookNode, mode: str, seed: str,
                       context: SubmissionContext) -> tuple:
    """Run the notebook (all of it, or its definitions) in a fresh sandbox and the hidden checks against it.
    Returns (None, ...) instead, before any check, when a definitions-only run raised a NameError: a student's
    definition used a name that only a skipped cell defines (a default argument, say), and the grade must not
    depend on which cells the grader chose to skip."""
    rubric = ctx.rubric
    cells = select_cells(notebook, mode, rubric.setup_cells)
    to_run = notebook if mode == "all" else execution.reduced(notebook, cells)
    with Sandbox(nbformat.writes(to_run).encode(), notebook_name=f"{sub.lab}.ipynb",
                 models_dir=ctx.models_dir, limits=rubric.sandbox_limits, gpu=ctx.gpu,
                 no_sandbox=ctx.no_sandbox) as sandbox:
        run = sandbox.run()
        if mode != "all" and run.reason is None and execution.raised(run.notebook, "NameError"):
            return None, None, (), [], 0.0
        executed = run.notebook if mode == "all" else _merged(notebook, run.notebook, cells)
        t_checks = time.perf_counter()
        if ctx.models_dir is not None:  # the checks load the same models in this (trusted) process
            os.environ["SPARKGRADE_MODELS_TRUSTED"] = str(ctx.models_dir)
        checks, grader_errors = run_checks(rubric, sandbox, seed, context)
        checks_s = time.perf_counter() - t_checks
    return run, executed, checks, grader_errors, checks_s


def grade_submission(sub: Submission, ctx: LabContext, seed: str) -> tuple[GradeRecord, bytes | None]:
    """Grade one submission. Never raises for anything the submission does; returns the record and the
    executed notebook (untrusted bytes, for feedback) when there is one."""
    t0 = time.perf_counter()
    rubric = ctx.rubric
    base = dict(student=sub.student, assignment=sub.lab, max_score=rubric.max_score, content_hash=sub.content_hash,
                seed=seed, rubric_version=rubric.version, sandboxed=not ctx.no_sandbox, machine=platform.node())
    flags: list[Flag] = [] if not ctx.no_sandbox else [Flag("unsandboxed", "graded with --no-sandbox: trusted "
                                                             "self-test only, student code ran unconfined")]
    try:
        if sub.problem:  # no notebook under the expected name: the reason says what the folder held
            raise InvalidNotebook(sub.problem)
        nb = read_submission(sub.notebook)
    except InvalidNotebook as exc:
        return GradeRecord(status="invalid", score=0.0, checks=_zero(rubric, str(exc)), flags=tuple(flags),
                           reason=str(exc), timings={"total_s": time.perf_counter() - t0}, **base), None
    repair = repair_locked_cells(nb, ctx.source)
    flags += repair.flags
    flags += suspicious_code(repair.notebook, ctx.source)
    context = SubmissionContext(sub.student, sub.lab, dict(sub.files), ctx.hardware,
                                "cuda" if ctx.gpu is not None else "cpu")
    run, executed, checks, grader_errors, checks_s = _execute_and_check(sub, ctx, repair.notebook, rubric.execute,
                                                                        seed, context)
    rerun_after_s = None
    if run is None:  # a definitions-only run lacked a name only the whole notebook defines: run it all
        rerun_after_s = time.perf_counter() - t0
        run, executed, checks, grader_errors, checks_s = _execute_and_check(sub, ctx, repair.notebook, "all", seed,
                                                                            context)
    assert run is not None
    status = "graded"
    reason = ""
    if run.reason is not None:
        flags.append(Flag(run.reason, run.detail))
        reason = run.detail
        if run.reason == "timeout" and not run.alive:
            status = "timeout"
        elif not run.alive:
            status = "error"
    for err in grader_errors:
        flags.append(Flag("grader-error", err[:500]))
    flags += benchmark_flags(sub.files.get("benchmarks.json"), ctx.hardware)
    score = round(sum(c.points for c in checks), 6)
    timings = {"sandbox_start_s": run.start_s, "notebook_s": run.run_s, "checks_s": checks_s,
               "total_s": time.perf_counter() - t0}
    if rerun_after_s is not None:  # on the record: the whole notebook ran, after a definitions-only run of this long
        timings["definitions_run_s"] = rerun_after_s
    return GradeRecord(status=status, score=score, checks=tuple(checks), flags=tuple(flags), reason=reason,
                       timings=timings, **base), executed
