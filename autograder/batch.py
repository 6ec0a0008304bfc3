"""The batch: find a lab's submissions, grade what is new on local worker processes or a Dask cluster, and store
each result as it arrives (`sparkgrade grade`). Grading one submission is autograder/grading.py's business.

A task is self-contained: it carries the submission's bytes, its seed and the lab id, and returns the GradeRecord
and the executed notebook. Workers are stateless; everything that is stored (results, nbgrader's gradebook) is
written by the process that runs the batch, one task at a time as results arrive, so a killed batch loses at most
the submissions that were still running, and running the command again grades exactly those.

GPU-aware: a lab whose rubric says ``gpu: true`` is graded on the GPUs (one task per GPU at a time, the sandbox
binds only that GPU's device nodes); other labs run on CPU workers. On Dask, GPU tasks ask for the resource
``GPU=1`` (start those workers with ``--resources GPU=1``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path

from autograder.course.gradebook import BadTimestamp, GradebookSession
from autograder.db.store import CourseStore
from autograder.errors import UserError
from autograder.grading import LabContext, failed_record, grade_submission, grader_error, load_lab
from autograder.intake.submission import Submission, find_submissions, read_submission_folder
from autograder.records import Flag, GradeRecord
from autograder.sandbox import check_sandbox_available


@dataclass(frozen=True)
class GradeTask:
    submission: Submission
    seed: str
    course_dir: str | None  # where the course's own copy of the lab lives, when the worker can see it
    no_sandbox: bool = False
    hardware: str | None = None
    needs_gpu: bool = False


@dataclass(frozen=True)
class TaskResult:
    task: GradeTask
    record: GradeRecord
    executed: bytes | None


def _models_fallback() -> Path:
    """A worker on another machine builds the (deterministic) tiny models itself, once."""
    from reference.tiny import build_models

    cache = Path(os.environ.get("SPARKGRADE_MODEL_CACHE", Path.home() / ".cache" / "sparkgrade" / "models"))
    build_models(cache)
    return cache


@functools.cache
def _context(lab: str, course_dir: str | None, no_sandbox: bool, hardware: str | None, gpu: int | None) -> LabContext:
    course = Path(course_dir) if course_dir and Path(course_dir).is_dir() else None
    ctx = load_lab(course, lab, no_sandbox=no_sandbox, hardware=hardware)
    if ctx.models_dir is None or not ctx.models_dir.is_dir():
        ctx = dataclasses.replace(ctx, models_dir=_models_fallback())
    if gpu is not None:
        ctx = dataclasses.replace(ctx, gpu=gpu)
    return ctx


def run_task(task: GradeTask, gpu: int | None = None) -> TaskResult:
    """The unit of work, local or remote: grade one submission from its bytes."""
    if gpu is None and task.needs_gpu:  # a Dask GPU worker: its own GPU (SPARKGRADE_GPU or CUDA_VISIBLE_DEVICES)
        gpu = _dask_gpu()
    ctx = _context(task.submission.lab, task.course_dir, task.no_sandbox, task.hardware, gpu)
    record, executed = grade_submission(task.submission, ctx, task.seed)
    return TaskResult(task, record, executed)


def _lost(task: GradeTask, exc: BaseException) -> TaskResult:
    """A task whose worker failed (a grader bug outside grade_submission, a worker killed by the kernel's OOM
    killer, a lost Dask worker): that student gets an error record saying so; the batch goes on."""
    from autograder.rubric import load_rubric

    rubric = load_rubric(task.submission.lab)
    record = failed_record(task.submission, rubric, task.seed, "error", grader_error("running the task", exc),
                           sandboxed=not task.no_sandbox)
    return TaskResult(task, record, None)


def _safe_run_task(task: GradeTask, gpu: int | None) -> TaskResult:
    try:
        return run_task(task, gpu)
    except Exception as exc:
        return _lost(task, exc)


_worker_gpu: int | None = None


@functools.cache
def _dask_gpu() -> int:
    """A Dask worker started with --resources GPU=1 owns the GPU its environment names (README: one worker per GPU,
    each with its own CUDA_VISIBLE_DEVICES), not GPU 0 of the machine."""
    from autograder.sandbox.gpus import own_gpu, worker_gpu

    return own_gpu(worker_gpu())


def _init_worker(gpus: list[int] | None, counter: Synchronized[int]) -> None:
    """Each GPU worker process owns one GPU for its whole life: the next visible GPU, by its device node, and the
    only one CUDA shows this process (so the trusted checks' cuda:0 is the sandbox's GPU)."""
    global _worker_gpu
    if gpus:
        with counter.get_lock():
            position = gpus[counter.value % len(gpus)]
            counter.value += 1
        from autograder.sandbox.gpus import own_gpu

        _worker_gpu = own_gpu(position)


def _run_in_worker(task: GradeTask) -> TaskResult:
    return run_task(task, _worker_gpu)


def default_workers(needs_gpu: bool, threads_per_sandbox: int) -> int:
    """One worker per GPU for GPU labs; for CPU labs one per core. Most of a submission's CPU time is
    single-threaded (sandbox start, the kernel's cells, the checks), so a worker per core keeps every core busy:
    24 submissions of lab 2.4.4 on 2 cores took 38.4 s with 2 workers against 54.2 s with 1
    (benchmarks/batch_grading.py). ``threads_per_sandbox`` (the sandbox's BLAS/OpenMP threads) lowers the count
    only above 2 threads per sandbox."""
    if needs_gpu:
        return max(1, gpu_count())
    cores = os.cpu_count() or 1
    return max(1, min(cores, cores * 2 // max(1, threads_per_sandbox)))


def gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:
        return 0


_shared_pool: ProcessPoolExecutor | None = None


@contextlib.contextmanager
def shared_workers(workers: int | None = None) -> Iterator[None]:
    """One pool of CPU worker processes for every grade_course call inside (the demo grades six labs): each worker's
    interpreter, torch import, sandbox zygote and lab contexts are paid once, not once per lab and worker. GPU labs
    and one-worker batches still run as they would outside."""
    global _shared_pool
    n = workers or default_workers(False, 1)
    ctx = get_context("spawn")
    counter: Synchronized[int] = ctx.Value("i", 0)
    with ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_init_worker,
                             initargs=(None, counter)) as pool:
        _shared_pool = pool
        try:
            yield
        finally:
            _shared_pool = None


def run_local(tasks: Sequence[GradeTask], workers: int) -> Iterator[TaskResult]:
    """In this process for one worker (no start-up cost), else a pool of spawned worker processes (the shared one,
    inside shared_workers)."""
    if not tasks:
        return
    gpus = list(range(gpu_count())) if any(t.needs_gpu for t in tasks) else []
    if gpus:
        workers = min(workers, len(gpus))
    if workers <= 1:
        for task in tasks:
            yield _safe_run_task(task, gpus[0] if gpus else None)
        return
    if _shared_pool is not None and not gpus:
        yield from _drain(_shared_pool, tasks)
        return
    ctx = get_context("spawn")  # a clean interpreter per worker: no inherited threads, locks or CUDA state
    counter: Synchronized[int] = ctx.Value("i", 0)
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx, initializer=_init_worker,
                             initargs=(gpus or None, counter)) as pool:
        yield from _drain(pool, tasks)


def _drain(pool: ProcessPoolExecutor, tasks: Sequence[GradeTask]) -> Iterator[TaskResult]:
    futures: dict[Future[TaskResult], GradeTask] = {pool.submit(_run_in_worker, t): t for t in tasks}
    pending: set[Future[TaskResult]] = set(futures)
    try:
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                try:
                    yield fut.result()
                except Exception as exc:  # never re-raised: it would abort the batch for every other student
                    yield _lost(futures[fut], exc)
    except KeyboardInterrupt:
        # Ctrl-C stops now: queued tasks are dropped and running ones killed (their sandboxes die with them),
        # instead of waiting for every running submission to finish. What is stored stays stored.
        pool.shutdown(wait=False, cancel_futures=True)
        for process in list((pool._processes or {}).values()):
            process.terminate()
        raise


def run_dask(tasks: Sequence[GradeTask], scheduler: str) -> Iterator[TaskResult]:
    """The same tasks on a Dask distributed cluster; results arrive as they complete."""
    from distributed import Client, as_completed

    with Client(scheduler) as client:
        futures = {client.submit(run_task, t, resources={"GPU": 1} if t.needs_gpu else None, pure=False,
                                 key=f"grade-{t.submission.lab}-{t.submission.student}-{t.seed[:8]}"): t
                   for t in tasks}
        for fut in as_completed(futures):
            try:
                result = fut.result()  # distributed is untyped: the worker's answer is checked, not assumed
                if not isinstance(result, TaskResult):
                    raise TypeError(f"a Dask worker returned a {type(result).__name__}, not a TaskResult")
                yield result
            except Exception as exc:
                yield _lost(futures[fut], exc)


def _after_grading(gradebook: GradebookSession, lab: str, record: GradeRecord) -> GradeRecord:
    """Lateness and nbgrader's gradebook (opened once per batch) for one graded record. The student wrote
    timestamp.txt; whatever it holds, or whatever the gradebook says, becomes a flag on this record and never stops
    the batch."""
    extra: list[Flag] = []
    try:
        late = gradebook.seconds_late(lab, record.student)
        if late > 0:
            extra.append(Flag("late", f"submitted {late / 3600:.1f} h after the due date (nbgrader's late policy "
                                      "applies)"))
    except BadTimestamp as exc:
        extra.append(Flag("timestamp", f"{exc}; lateness was not judged"))
    except Exception as exc:
        extra.append(Flag("grader-error", grader_error("judging lateness", exc)))
    if gradebook.exists:
        try:
            gradebook.sync(record)
        except Exception as exc:
            extra.append(Flag("grader-error", grader_error("mirroring the grade to nbgrader's gradebook", exc)))
    return dataclasses.replace(record, flags=(*record.flags, *extra)) if extra else record


def _sync_counted(gradebook: GradebookSession, store: CourseStore, ctx: LabContext, record: GradeRecord) -> None:
    """Under ``counts: best`` nbgrader's gradebook gets the best attempt, not the one just graded (which
    _after_grading mirrored): the choice is autograder.course.attempts', as for the export and the pages."""
    from autograder.course.attempts import counted_attempt
    from autograder.course.config import AttemptPolicy

    policy = ctx.course.policies.get(record.assignment, AttemptPolicy())
    if policy.counts == "last" or not gradebook.exists:
        return
    try:
        found = counted_attempt(store, record.assignment, record.student, policy)
        if found is not None and found.record.content_hash != record.content_hash:
            gradebook.sync(found.record)
    except Exception:  # the grade is stored; the watch (or the next grade) mirrors it again
        pass


# -- the course batch (`sparkgrade grade`) -------------------------------------------------------------------------

Progress = Callable[[GradeRecord, int, int], None]  # (record just stored, done, total)


def grade_course(course_dir: Path, lab: str, students: list[str] | None = None, *, no_sandbox: bool = False,
                 force: bool = False, hardware: str | None = None, db_url: str | None = None,
                 workers: int | None = None, scheduler: str | None = None,
                 on_result: Progress | None = None) -> list[GradeRecord]:
    """Grade every (or the named) submission of one lab; already-graded identical content is skipped, so running
    the same command again after a crash grades exactly what is missing.

    Tasks run on ``workers`` local processes (default: from cores and GPUs) or on the Dask cluster at
    ``scheduler``; results are stored here, one at a time, as they arrive, and reported to ``on_result``."""
    if not (course_dir / "nbgrader_config.py").is_file() and not (course_dir / "submitted").is_dir():
        raise UserError(f"{course_dir} is not a course folder (no nbgrader_config.py, no submitted/): "
                        "create one with `sparkgrade init`")
    if not no_sandbox and scheduler is None:
        check_sandbox_available()
    ctx = load_lab(course_dir, lab, no_sandbox=no_sandbox, hardware=hardware)
    if ctx.needs_gpu and scheduler is None and gpu_count() == 0:
        raise UserError(f"{lab} grades on a GPU in this course (sparkgrade.yaml: gpu: true) and this machine has no "
                        "CUDA GPU: grade it on the GPU box (or a Dask GPU worker), or set gpu: false")
    store = CourseStore(course_dir, db_url)
    subs = find_submissions(course_dir, lab, students)
    records: dict[str, GradeRecord] = {}
    tasks: list[GradeTask] = []
    for student, path in subs:
        sub = read_submission_folder(student, lab, path)
        old = None if force else store.unchanged(lab, student, sub.content_hash, ctx.rubric.version, not no_sandbox)
        if old is not None:
            records[student] = old
            continue
        # hardware and GPU are resolved here: a remote worker may not see the course's sparkgrade.yaml
        tasks.append(GradeTask(sub, store.seed_for(student, lab, sub.content_hash), str(course_dir.resolve()),
                               no_sandbox, ctx.hardware, ctx.needs_gpu))
    if scheduler:
        results = run_dask(tasks, scheduler)
    else:
        n = workers or default_workers(ctx.needs_gpu, ctx.rubric.sandbox_limits.threads)
        results = run_local(tasks, n)
    with GradebookSession(course_dir) as gradebook:
        for result in results:
            record = _after_grading(gradebook, lab, result.record)
            executed = result.executed
            try:
                store.save(record, executed)
            except Exception as exc:  # e.g. a value the database refuses: the student still gets a record
                record = failed_record(result.task.submission, ctx.rubric, result.task.seed, "error",
                                       grader_error("storing the grade", exc), sandboxed=not no_sandbox)
                store.save(record, None)
            _sync_counted(gradebook, store, ctx, record)
            records[record.student] = record
            if on_result is not None:
                on_result(record, len(records), len(subs))
    store.close()
    return [records[s] for s, _ in subs if s in records]
