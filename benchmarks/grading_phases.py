"""Where a submission's grading time goes: for each phase, the median over the submissions of one lab's demo class
and its share of the median wall time of one submission.

The class (the lab's demo class repeated to --students) is graded in this process with one worker, so every
submission is graded one after the other and each phase is timed by wrapping the engine function that does it
(benchmark-side only: the engine is not changed, and the sandbox and the checks run exactly as `sparkgrade grade`
runs them). Then the feedback pages are rendered. Phases:

    read             the submission folder read and hashed (batch.read_submission_folder)
    read and repair  nbformat parse and validation, locked-cell repair, code scan, parameter pin
    sandbox start    bubblewrap or zygote fork up to a ready kernel (the record's sandbox_start_s)
    notebook         the notebook (or its definitions) run in the kernel (notebook_s)
    checks: calls    the hidden checks' calls into the sandbox, round trips included (Sandbox.call_many)
    checks: trusted  the rest of the checks: pytest, reference answers, comparison, diagnosis
    scoring          benchmark judgement and flags
    gradebook sync   lateness and nbgrader's gradebook (GradebookSession.seconds_late and .sync)
    store            the record and the executed notebook into the course database (CourseStore.save)
    feedback         the student's feedback page (feedback.write_feedback)
    other            the wall time no phase above accounts for (sandbox teardown, the batch's own work)

and, per check, the median of its calls, round trips and time in them.

The floor: the same hidden checks (the same rubric, seeds and submitted files) calling the course's own answers
(the source notebook's solution cells) in this process, with no sandbox, no kernel and no store
(tests/test_rubrics.py's LocalCaller, which copies tensors in and out as the sandbox does). It is what grading one
submission cannot get below on this machine; the table says how many times it the median submission takes.
Usage:
    python benchmarks/grading_phases.py [--lab lab-2.4.4-moe-router] [--students 24] [--dir /tmp/sparkgrade-phases]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import demo_course

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PHASES = ("read", "read and repair", "sandbox start", "notebook", "checks: calls", "checks: trusted", "scoring",
          "gradebook sync", "store", "feedback", "other")


class PhaseClock:
    """Seconds per phase per submission; the submission is the one whose grading started last."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.by_student: dict[str, dict[str, float]] = {}
        self.checks: dict[str, list[tuple[int, int, float]]] = defaultdict(list)  # cid -> (calls, trips, s)
        self.current: dict[str, float] = defaultdict(float)
        self.pending = [0, 0, 0.0]  # calls, round trips, seconds since the last check's result

    def start(self, student: str) -> None:
        self.current = self.by_student.setdefault(student, defaultdict(float))

    def wrap(self, owner: Any, name: str, phase: str, before: Callable[..., None] | None = None) -> None:
        real = getattr(owner, name)

        @functools.wraps(real)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if before is not None:
                before(*args, **kwargs)
            t0 = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                self.current[phase] += time.perf_counter() - t0

        setattr(owner, name, timed)


CLOCK = PhaseClock()


def instrument(clock: PhaseClock) -> None:
    from autograder import batch, feedback, grading
    from autograder.checks.plugin import CheckPlugin
    from autograder.db.store import CourseStore
    from autograder.sandbox.sandbox import Sandbox

    clock.wrap(batch, "run_task", "_task", before=lambda task, *a, **k: clock.start(task.submission.student))
    clock.wrap(batch, "read_submission_folder", "read")
    for name in ("read_submission", "repair_locked_cells", "suspicious_code", "pin_parameters"):
        clock.wrap(grading, name, "read and repair")
    clock.wrap(grading, "run_all_checks", "_checks")
    clock.wrap(grading, "benchmark_judgement", "scoring")
    clock.wrap(grading, "benchmark_flags", "scoring")
    if hasattr(batch, "GradebookSession"):  # one gradebook per batch
        clock.wrap(batch.GradebookSession, "seconds_late", "gradebook sync")
        clock.wrap(batch.GradebookSession, "sync", "gradebook sync")
    else:  # before: opened twice per record
        clock.wrap(batch, "seconds_late", "gradebook sync")
        clock.wrap(batch, "sync_record", "gradebook sync")
    clock.wrap(CourseStore, "save", "store")
    clock.wrap(feedback, "write_feedback", "feedback",
               before=lambda course, record, *a, **k: clock.start(record.student))

    real_many = Sandbox.call_many

    def call_many(self: Sandbox, calls: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return real_many(self, calls)
        finally:
            spent = time.perf_counter() - t0
            clock.current["checks: calls"] += spent
            clock.pending[0] += len(calls)
            clock.pending[1] += 1
            clock.pending[2] += spent

    Sandbox.call_many = call_many  # type: ignore[method-assign]
    real_result = CheckPlugin._result

    def result(self: CheckPlugin, item: Any, cid: str, *args: Any) -> Any:
        calls, trips, spent = clock.pending
        clock.checks[cid].append((int(calls), int(trips), float(spent)))
        clock.pending[:] = [0, 0, 0.0]
        return real_result(self, item, cid, *args)

    CheckPlugin._result = result  # type: ignore[method-assign]


def measure(lab: str, students: int, root: Path) -> tuple[dict[str, dict[str, float]], PhaseClock, float, float]:
    """Grade the class once; returns {student: {phase: s, "wall": s}}, the clock, the wall time of the batch and
    feedback together, and of the feedback pass alone."""
    from autograder.batch import grade_course
    from autograder.feedback import write_feedback_pages

    course = demo_course(root / lab / "course", lab, students)
    clock = CLOCK
    clock.reset()
    walls: dict[str, float] = {}
    last = [time.perf_counter()]

    def on_result(record: Any, done: int, total: int) -> None:
        now = time.perf_counter()
        walls[record.student] = now - last[0]
        last[0] = now
        phases = clock.by_student.setdefault(record.student, defaultdict(float))
        phases["sandbox start"] = float(record.timings.get("sandbox_start_s", 0.0))
        phases["notebook"] = float(record.timings.get("notebook_s", 0.0))

    t0 = time.perf_counter()
    grade_course(course, lab, workers=1, on_result=on_result)
    t_feedback = time.perf_counter()
    write_feedback_pages(course, lab)
    wall = time.perf_counter() - t0
    feedback_s = time.perf_counter() - t_feedback
    rows: dict[str, dict[str, float]] = {}
    for student, phases in clock.by_student.items():
        row = {p: phases.get(p, 0.0) for p in PHASES if p != "other"}
        row["checks: trusted"] = max(0.0, phases.get("_checks", 0.0) - phases.get("checks: calls", 0.0))
        # The grading's wall (between two results) and the share of the feedback pass that was this student's.
        row["wall"] = walls.get(student, 0.0) + phases.get("feedback", 0.0)
        row["other"] = max(0.0, row["wall"] - sum(row[p] for p in PHASES if p != "other"))
        rows[student] = row
    return rows, clock, wall, feedback_s


def inprocess_floor(course: Path, lab: str) -> list[float]:
    """Seconds per submission of the floor: the lab's hidden checks on the course's answers, in this process."""
    import os

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_rubrics import MODELS_ENV, LocalCaller, solution_namespace

    from autograder.checks.plugin import SubmissionContext
    from autograder.checks.runner import run_all_checks
    from autograder.intake.submission import find_submissions, read_submission_folder
    from autograder.rubric import load_rubric

    os.environ[MODELS_ENV] = str(course / "source" / lab / "models")
    rubric = load_rubric(lab)
    namespace = solution_namespace(lab)
    seconds = []
    for student, path in find_submissions(course, lab, None):
        sub = read_submission_folder(student, lab, path)
        t0 = time.perf_counter()
        outcome = run_all_checks(rubric, LocalCaller(namespace), f"floor-{student}",
                                 SubmissionContext(student, lab, dict(sub.files)))
        seconds.append(time.perf_counter() - t0)
        if outcome.grader_errors:
            raise SystemExit(f"the floor's checks failed to run for {student}: {outcome.grader_errors[:2]}")
    return seconds


def report(lab: str, rows: dict[str, dict[str, float]], clock: PhaseClock, wall: float, feedback_s: float,
           floor: list[float]) -> None:
    n = len(rows)
    median_wall = statistics.median(r["wall"] for r in rows.values())
    print(f"\n{lab}: {n} submissions, one worker, {wall:.1f} s with feedback ({feedback_s:.1f} s of it), "
          f"{wall / max(n, 1):.2f} s/submission; median submission {median_wall:.2f} s")
    if floor:
        med = statistics.median(floor)
        print(f"in-process floor (the same checks on the course's answers, no sandbox): median {med:.3f} s, "
              f"{sum(floor):.1f} s for {len(floor)}; the median submission takes {median_wall / med:.1f}x it")
    print(f"{'phase':18} {'median s':>9} {'share':>7}")
    for phase in PHASES:
        med = statistics.median(r[phase] for r in rows.values())
        print(f"{phase:18} {med:9.3f} {med / median_wall:7.1%}")
    print(f"{'check':34} {'calls':>6} {'trips':>6} {'median s':>9}")
    for cid, seen in clock.checks.items():
        print(f"{cid:34} {statistics.median(c for c, _, _ in seen):6.0f} "
              f"{statistics.median(t for _, t, _ in seen):6.0f} {statistics.median(s for _, _, s in seen):9.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", nargs="*", default=["lab-2.4.2-mamba-architecture", "lab-2.4.4-moe-router"])
    parser.add_argument("--students", type=int, default=24)
    parser.add_argument("--dir", default="/tmp/sparkgrade-phases")
    parser.add_argument("--no-floor", action="store_true", help="skip the in-process floor")
    args = parser.parse_args()
    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    instrument(CLOCK)
    for lab in args.lab:
        rows, clock, wall, feedback_s = measure(lab, args.students, root)
        sandboxed = {cid: list(seen) for cid, seen in clock.checks.items()}
        floor = [] if args.no_floor else inprocess_floor(root / lab / "course", lab)
        clock.checks = defaultdict(list, sandboxed)  # the floor's checks ran through the same plugin: not theirs
        report(lab, rows, clock, wall, feedback_s, floor)


if __name__ == "__main__":
    main()
