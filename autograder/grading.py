"""Grade submissions: the ordered steps for one submission, and the `sparkgrade grade` command around them.

    read (untrusted bytes -> notebook, or "invalid")
    -> repair locked cells from the source, flag tampering
    -> run the notebook in its own sandbox (kernel inside; the executed notebook comes back)
    -> hidden checks in this process, calling the student's functions in that sandbox
    -> score from the rubric -> store (atomic) -> next submission

A submission that fails at any step gets a record saying why; the batch always goes on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from autograder import execution
from autograder.checks.plugin import SubmissionContext
from autograder.checks.runner import run_checks
from autograder.errors import UserError
from autograder.execution import select_cells
from autograder.gradebook import seconds_late, sync_record
from autograder.integrity import (
    MAX_NOTEBOOK_BYTES,
    InvalidNotebook,
    read_submission,
    repair_locked_cells,
    suspicious_code,
)
from autograder.paths import assignments_root, check_lab
from autograder.records import CheckResult, Flag, GradeRecord
from autograder.rubric import Rubric, load_rubric
from autograder.sandbox import Sandbox, check_sandbox_available
from autograder.store import CourseStore

# Files a check may read from the submission folder, as untrusted data, with a size cap each.
DATA_FILES = {"benchmarks.json": 2 * 1024 * 1024}


@dataclass(frozen=True)
class Submission:
    student: str
    lab: str
    notebook: bytes
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        h = hashlib.sha256(self.notebook)
        for name in sorted(self.files):
            h.update(name.encode() + b"\0" + self.files[name])
        return h.hexdigest()


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


def find_submissions(course_dir: Path, lab: str, students: list[str] | None) -> list[tuple[str, Path]]:
    """COURSE_DIR/submitted/<student>/<lab>/<lab>.ipynb, as nbgrader collects them."""
    root = course_dir / "submitted"
    found = sorted((p.parent.parent.name, p) for p in root.glob(f"*/{lab}/{lab}.ipynb")) if root.is_dir() else []
    if students:
        missing = sorted(set(students) - {s for s, _ in found})
        if missing:
            raise UserError(f"no submission of {lab} for: {', '.join(missing)} (looked in {root})")
        found = [(s, p) for s, p in found if s in students]
    return found


def read_submission_folder(student: str, lab: str, notebook_path: Path) -> Submission:
    """The submitted notebook and data files. The student made this folder: a symlink or FIFO planted under an
    expected name is not followed (it would let the grader read the course secret or another submission)."""
    from autograder.sandbox.codec import OutputError, open_dir, read_bounded

    dir_fd = open_dir(str(notebook_path.parent))
    try:
        files = {}
        for name, cap in DATA_FILES.items():
            try:
                data = read_bounded(dir_fd, name, cap)
            except OutputError:
                data = None  # the benchmark checks then say that no usable file was submitted
            if data is not None:
                files[name] = data
        try:
            notebook = read_bounded(dir_fd, notebook_path.name, 2 * MAX_NOTEBOOK_BYTES) or b""
        except OutputError:
            notebook = b""  # graded as invalid: not a notebook we can read
    finally:
        os.close(dir_fd)
    return Submission(student, lab, notebook, files)


def grade_course(course_dir: Path, lab: str, students: list[str] | None = None, *, no_sandbox: bool = False,
                 force: bool = False, hardware: str | None = None, progress: bool = True, db_url: str | None = None,
                 workers: int | None = None, scheduler: str | None = None) -> list[GradeRecord]:
    """Grade every (or the named) submission of one lab; already-graded identical content is skipped, so running
    the same command again after a crash grades exactly what is missing.

    Tasks run on ``workers`` local processes (default: from cores and GPUs) or on the Dask cluster at
    ``scheduler``; results are stored here, one at a time, as they arrive."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from autograder.batch import GradeTask, default_workers, run_dask, run_local

    if not (course_dir / "nbgrader_config.py").is_file() and not (course_dir / "submitted").is_dir():
        raise UserError(f"{course_dir} is not a course folder (no nbgrader_config.py, no submitted/): "
                        "create one with `sparkgrade init`")
    if not no_sandbox and scheduler is None:
        check_sandbox_available()
    ctx = load_lab(course_dir, lab, no_sandbox=no_sandbox, hardware=hardware)
    store = CourseStore(course_dir, db_url)
    subs = find_submissions(course_dir, lab, students)
    records: dict[str, GradeRecord] = {}
    tasks: list[GradeTask] = []
    for student, path in subs:
        sub = read_submission_folder(student, lab, path)
        old = store.load(lab, student)
        if (not force and old is not None and old.content_hash == sub.content_hash
                and old.rubric_version == ctx.rubric.version and old.sandboxed == (not no_sandbox)):
            records[student] = old
            continue
        tasks.append(GradeTask(sub, store.seed_for(student, lab, sub.content_hash), str(course_dir.resolve()),
                               no_sandbox, hardware, ctx.rubric.gpu))
    if scheduler:
        results = run_dask(tasks, scheduler)
    else:
        n = workers or default_workers(ctx.rubric.gpu, ctx.rubric.sandbox_limits.threads)
        results = run_local(tasks, n)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task_id = bar.add_task(f"grading {lab}", total=len(subs), completed=len(records))
        for result in results:
            record, student = result.record, result.record.student
            late = seconds_late(course_dir, lab, student)
            if late > 0:
                record = dataclasses.replace(record, flags=(*record.flags, Flag(
                    "late", f"submitted {late / 3600:.1f} h after the due date (nbgrader's late policy applies)")))
            store.save(record, result.executed)
            if (course_dir / "gradebook.db").exists():
                sync_record(course_dir, record)
            records[student] = record
            score = f"{record.score:g}/{record.max_score:g}"
            bar.update(task_id, advance=1, description=f"grading {lab}: {student} {score}")
    store.close()
    return [records[s] for s, _ in subs if s in records]


def cmd_grade(args) -> int:
    course = Path(args.course_dir)
    records = grade_course(course, args.lab, args.student, no_sandbox=getattr(args, "no_sandbox", False),
                           force=getattr(args, "force", False), db_url=getattr(args, "db", None),
                           workers=getattr(args, "workers", None), scheduler=getattr(args, "scheduler", None))
    if not records:
        print(f"no submissions of {args.lab} in {course / 'submitted'}")
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{args.lab}: {len(records)} submission(s)")
    for col in ("student", "status", "score", "flags"):
        table.add_column(col)
    for r in records:
        kinds = ", ".join(sorted({f.kind for f in r.flags}))
        table.add_row(r.student, r.status, f"{r.score:g} / {r.max_score:g}", kinds)
    Console().print(table)
    return 0
