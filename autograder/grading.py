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

import contextlib
import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import nbformat

from autograder.checks.plugin import SubmissionContext
from autograder.checks.runner import run_all_checks
from autograder.course.config import CourseConfig, course_rubric, effective_hardware, load_config
from autograder.intake import cells as execution
from autograder.intake.cells import select_cells
from autograder.intake.notebook import (
    InvalidNotebook,
    read_submission,
    repair_locked_cells,
    suspicious_code,
)
from autograder.intake.parameters import pin_parameters
from autograder.intake.submission import Submission
from autograder.paths import assignments_root, check_lab
from autograder.records import CheckResult, Flag, GradeRecord, SubmissionStatus
from autograder.rubric import Rubric
from autograder.sandbox import Sandbox
from autograder.sandbox.gpus import gpu_sandbox_slot

if TYPE_CHECKING:
    from autograder.plausibility import Judgement, Verdict
    from autograder.sandbox.calls import SandboxResult


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
    course: CourseConfig = field(default_factory=CourseConfig)

    @property
    def needs_gpu(self) -> bool:
        """On the GPU only where both say so: the lab's rubric (`gpu: true`) and the course (`gpu: true` in its
        sparkgrade.yaml), so the same lab still grades on CPU in a CPU course."""
        return self.rubric.on_gpu


def lab_source_dir(course_dir: Path | None, lab: str) -> Path:
    """The course's own copy of the lab when it has one (an instructor may have edited it), else the product's."""
    if course_dir is not None and (course_dir / "source" / lab / f"{lab}.ipynb").is_file():
        return course_dir / "source" / lab
    return assignments_root() / "source" / lab


def load_lab(course_dir: Path | None, lab: str, *, no_sandbox: bool = False, hardware: str | None = None,
             models_dir: Path | None = None) -> LabContext:
    check_lab(lab)
    course = load_config(course_dir)
    rubric = course_rubric(lab, course)
    src_dir = lab_source_dir(course_dir, lab)
    source = nbformat.read(src_dir / f"{lab}.ipynb", as_version=4)
    if models_dir is None and (src_dir / "models").is_dir():
        models_dir = src_dir / "models"
    return LabContext(lab, rubric, source, models_dir, effective_hardware(hardware, course, rubric.hardware),
                      no_sandbox, course=course)


def _zero(rubric: Rubric, message: str) -> tuple[CheckResult, ...]:
    return tuple(CheckResult(cid, spec.function, 0.0, spec.points, "error", message)
                 for cid, spec in rubric.checks.items())


def benchmark_judgement(sub: Submission, context: SubmissionContext) -> Judgement | None:
    """The benchmarks.json judgement of this submission: the one the lab's benchmark checks made and used, or, for
    a lab without benchmark checks, the file judged here once. None when no benchmarks.json was submitted."""
    from autograder.checks.trusted import BENCHMARKS_MEMO
    from autograder.plausibility import judge_file

    judged = context.memo.get(BENCHMARKS_MEMO)
    if judged is None and "benchmarks.json" in sub.files:
        judged = judge_file(sub.files["benchmarks.json"], context.hardware)
    return judged


def benchmark_flags(sub: Submission, judged: Judgement | None, hardware: str) -> list[Flag]:
    """Suspicious (not impossible) benchmark numbers cost no points: they are flagged for a person to look at, as
    are records measured on other hardware than the course's. Impossible ones are already scored by the lab's
    benchmark checks; a malformed file is theirs to explain."""
    from reference.devices import device_mismatches

    flags: list[Flag] = []
    data = sub.files.get("benchmarks.json")
    if data:
        try:
            raw = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raw = None
        flags += [Flag("device-mismatch", line[:500]) for line in device_mismatches(raw, hardware)][:10]
    if judged is not None:
        flags += [Flag("suspicious-benchmark", v.message[:500]) for v in judged.suspicious][:10]
    return flags


def _merged(full: nbformat.NotebookNode, executed: bytes | None, cells: list[int]) -> bytes:
    """The whole notebook with the outputs of the cells that ran (read back as untrusted input)."""
    try:
        run = read_submission(executed) if executed else None
    except InvalidNotebook:
        run = None
    merged = execution.merge(full, run, cells) if run is not None else full
    return _notebook_bytes(merged)


def _notebook_bytes(nb: nbformat.NotebookNode) -> bytes:
    text: str = nbformat.writes(nb)  # nbformat leaves writes unannotated
    return text.encode()


@dataclass(frozen=True)
class _Executed:
    """One sandbox run of a submission and the hidden checks against it."""

    run: SandboxResult
    executed: bytes | None  # the executed notebook (untrusted bytes), for feedback
    checks: tuple[CheckResult, ...]
    flags: list[Flag]
    checks_s: float


def _execute_and_check(sub: Submission, ctx: LabContext, notebook: nbformat.NotebookNode, mode: str, seed: str,
                       context: SubmissionContext) -> _Executed | None:
    """Run the notebook (all of it, or its definitions) in a fresh sandbox and the hidden checks against it.
    Returns None instead, before any check, when a definitions-only run raised a NameError: a student's
    definition used a name that only a skipped cell defines (a default argument, say), and the grade must not
    depend on which cells the grader chose to skip."""
    rubric = ctx.rubric
    cells = select_cells(notebook, mode, rubric.setup_cells)
    to_run = notebook if mode == "all" else execution.reduced(notebook, cells)
    # At most the course's number of GPU sandboxes at once on this machine: on unified memory they share the host's.
    slot = gpu_sandbox_slot(ctx.course.gpu_sandboxes) if ctx.gpu is not None else contextlib.nullcontext()
    with slot, Sandbox(_notebook_bytes(to_run), notebook_name=f"{sub.lab}.ipynb",
                 models_dir=ctx.models_dir, limits=rubric.sandbox_limits, gpu=ctx.gpu,
                 no_sandbox=ctx.no_sandbox) as sandbox:
        run = sandbox.run()
        if mode != "all" and run.reason is None and execution.raised(run.notebook, "NameError"):
            return None
        executed = run.notebook if mode == "all" else _merged(notebook, run.notebook, cells)
        t_checks = time.perf_counter()
        if ctx.models_dir is not None:  # the checks load the same models in this (trusted) process
            os.environ["SPARKGRADE_MODELS_TRUSTED"] = str(ctx.models_dir)
        outcome = run_all_checks(rubric, sandbox, seed, context)
        checks_s = time.perf_counter() - t_checks
    # What a person should see from the checks: the grader's own failures, and forbidden calls (rubric `forbid:`).
    check_flags = [Flag("grader-error", err[:500]) for err in outcome.grader_errors] + outcome.flags
    return _Executed(run, executed, tuple(outcome.results), check_flags, checks_s)


def failed_record(sub: Submission, rubric: Rubric, seed: str, status: SubmissionStatus, reason: str, *,
                  sandboxed: bool = True, flags: tuple[Flag, ...] = (), total_s: float = 0.0) -> GradeRecord:
    """The record of a submission that could not be graded: every check at zero with the reason, one line."""
    reason = one_line(reason)
    return GradeRecord(student=sub.student, assignment=sub.lab, status=status, score=0.0, max_score=rubric.max_score,
                       checks=_zero(rubric, reason), flags=flags, content_hash=sub.content_hash, seed=seed,
                       rubric_version=rubric.version, sandboxed=sandboxed, timings={"total_s": total_s},
                       reason=reason, machine=platform.node())


def one_line(text: str, limit: int = 500) -> str:
    return " ".join(str(text).split())[:limit]


def grader_error(step: str, exc: BaseException) -> str:
    """The reason of a record whose grading failed for a reason the grader does not attribute to the submission."""
    return one_line(f"grader error while {step}: {type(exc).__name__}: {exc}")


# Steps whose input is the submission's bytes and nothing else: what goes wrong there is the submission's shape.
_INTAKE_STEPS = ("reading the notebook", "repairing locked cells", "scanning the code")


def grade_submission(sub: Submission, ctx: LabContext, seed: str) -> tuple[GradeRecord, bytes | None]:
    """Grade one submission. Never raises, whatever the submission holds: a notebook the grader cannot take in is
    ``invalid``, a failure of the grader's own is ``error`` with "grader error" in its reason. Either way the
    record is stored like any other, so a rerun does not retry it unless the submission's content changed."""
    t0 = time.perf_counter()
    steps = ["reading the notebook"]
    try:
        return _grade(sub, ctx, seed, t0, steps)
    except (RecursionError, MemoryError) as exc:
        # Exhausted by the submission's shape (nesting, size) in whichever step held it: never retried as is.
        status: SubmissionStatus = "invalid" if steps[-1] in _INTAKE_STEPS else "error"
        reason = (f"the notebook is nested too deeply or is too large to process ({type(exc).__name__} while "
                  f"{steps[-1]})")
    except Exception as exc:  # a bug of the grader: reported as such, and it costs no other student
        status, reason = "error", grader_error(steps[-1], exc)
    return failed_record(sub, ctx.rubric, seed, status, reason, sandboxed=not ctx.no_sandbox,
                         total_s=time.perf_counter() - t0), None


def _grade(sub: Submission, ctx: LabContext, seed: str, t0: float,
           steps: list[str]) -> tuple[GradeRecord, bytes | None]:
    """grade_submission's steps; each names itself in ``steps`` first, so a failure says where it happened.
    Returns the record and the executed notebook (untrusted bytes, for feedback) when there is one."""
    rubric = ctx.rubric
    flags: list[Flag] = [] if not ctx.no_sandbox else [Flag("unsandboxed", "graded with --no-sandbox: trusted "
                                                             "self-test only, student code ran unconfined")]

    def record(status: SubmissionStatus, score: float, checks: tuple[CheckResult, ...], reason: str,
               timings: dict[str, float], verdicts: tuple[Verdict, ...] | None = None) -> GradeRecord:
        """This submission's record, with the flags gathered so far."""
        return GradeRecord(student=sub.student, assignment=sub.lab, status=status, score=score,
                           max_score=rubric.max_score, checks=checks, flags=tuple(flags), content_hash=sub.content_hash,
                           seed=seed, rubric_version=rubric.version, sandboxed=not ctx.no_sandbox, timings=timings,
                           reason=reason, machine=platform.node(), verdicts=verdicts)

    try:
        if sub.problem:  # no notebook under the expected name: the reason says what the folder held
            raise InvalidNotebook(sub.problem)
        nb = read_submission(sub.notebook)
    except InvalidNotebook as exc:
        return record("invalid", 0.0, _zero(rubric, str(exc)), str(exc), {"total_s": time.perf_counter() - t0}), None
    steps.append("repairing locked cells")
    repair = repair_locked_cells(nb, ctx.source)
    flags += repair.flags
    steps.append("scanning the code")
    flags += suspicious_code(repair.notebook, ctx.source)
    notebook = pin_parameters(repair.notebook, ctx.source)  # the grader decides the profile, not the submission
    steps.append("running the notebook and its checks")
    context = SubmissionContext(sub.student, sub.lab, dict(sub.files), ctx.hardware,
                                "cuda" if ctx.gpu is not None else "cpu")
    done = _execute_and_check(sub, ctx, notebook, rubric.execute, seed, context)
    rerun_after_s = None
    if done is None:  # a definitions-only run lacked a name only the whole notebook defines: run it all
        rerun_after_s = time.perf_counter() - t0
        done = _execute_and_check(sub, ctx, notebook, "all", seed, context)
    assert done is not None
    run = done.run
    status: SubmissionStatus = "graded"
    reason = ""
    if run.reason is not None:
        flags.append(Flag(run.reason, run.detail))
        reason = run.detail
        if run.reason == "timeout" and not run.alive:
            status = "timeout"
        elif not run.alive:
            status = "error"
    steps.append("scoring")
    flags += done.flags
    judged = benchmark_judgement(sub, context)
    flags += benchmark_flags(sub, judged, context.hardware)
    score = round(sum(c.points for c in done.checks), 6)
    timings = {"sandbox_start_s": run.start_s, "notebook_s": run.run_s, "checks_s": done.checks_s,
               "total_s": time.perf_counter() - t0}
    if rerun_after_s is not None:  # on the record: the whole notebook ran, after a definitions-only run of this long
        timings["definitions_run_s"] = rerun_after_s
    # No verdicts at all is stored as none and reads back as None: the record says the same before and after
    verdicts = judged.verdicts or None if judged is not None else None
    return record(status, score, done.checks, reason, timings, verdicts), done.executed
