"""What one hanging function costs a batch: 24 submissions of lab 2.4.2 (tiny profile) graded with and without one
whose selective_scan is `while True: pass`, in the same run, on the same local workers.

Before CallBudget (autograder/checks/plugin.py) each of the 13 checks that call selective_scan waited call_s
(60 s): the hanging submission held a worker for 13 minutes (the batch took 698 s instead of 20 s). Now its first
call waits call_s and the other checks fail at once ("timed out earlier"), so it should finish within 2 x call_s
and cost the batch no more than the one worker it occupies for that time.

    python benchmarks/hanging.py [--students 24] [--workers 2] [--dir /tmp/sparkgrade-hanging]

Prints the wall time of both batches, their ratio, and the hanging submission's own times from its record.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import demo_course, fresh_copy, timed

LAB = "lab-2.4.2-mamba-architecture"
HANG = {"source": ["selective_state_update"], "code": {"selective_scan": (
    "def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,\n"
    "                   return_last_state=False):\n"
    "    while True:\n"
    "        pass\n")}}


def with_hanging(course: Path, dest: Path) -> Path:
    """The same class, one student's selective_scan replaced by an infinite loop."""
    from autograder.course.demo import write_submission

    copy = fresh_copy(course, dest)
    victim = sorted(p.name for p in (copy / "submitted").iterdir())[0]
    shutil.rmtree(copy / "submitted" / victim)
    write_submission(copy, LAB, victim, HANG, datetime.now(UTC) - timedelta(hours=1))
    return copy


def grade(course: Path, workers: int) -> float:
    cmd = [sys.executable, "-m", "autograder.cli", "grade", str(course), LAB, "--workers", str(workers)]
    return timed(cmd, course, f"grading {course}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dir", default="/tmp/sparkgrade-hanging")
    args = parser.parse_args()
    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    course = demo_course(root / "course", LAB, args.students)
    clean = fresh_copy(course, root / "clean")
    hanging = with_hanging(course, root / "hanging")
    t_clean = grade(clean, args.workers)
    t_hang = grade(hanging, args.workers)

    from autograder.db.store import CourseStore
    from autograder.rubric import load_rubric

    call_s = load_rubric(LAB).sandbox_limits.call_s
    records = {r.student: r for r in CourseStore(hanging).records(LAB)}
    victim = sorted(records)[0]
    rec = records[victim]
    timed_out_earlier = sum("timed out earlier" in c.message for c in rec.checks)
    print(f"{args.students} submissions of {LAB}, {args.workers} workers, {os.cpu_count()} cores, call_s {call_s:.0f}")
    print(f"without a hanging submission: {t_clean:7.1f} s")
    print(f"with one hanging submission:  {t_hang:7.1f} s   ratio {t_hang / t_clean:.2f}x, "
          f"difference {t_hang - t_clean:+.1f} s")
    print(f"the hanging submission ({victim}): status {rec.status}, score {rec.score}/{rec.max_score}, "
          f"checks {rec.timings.get('checks_s', 0):.1f} s, total {rec.timings.get('total_s', 0):.1f} s "
          f"(bound 2 x call_s = {2 * call_s:.0f} s); {timed_out_earlier} checks failed at once ('timed out earlier')")
    # If the hanging submission costs only the worker it holds, the others' worker-seconds are unchanged and its
    # own H seconds are added to one worker: wall ~ (t_clean * W * (n-1)/n + H) / W, unless H alone is longer.
    held = rec.timings.get("total_s", 0.0)
    n, w = args.students, args.workers
    expected = max(held, (t_clean * w * (n - 1) / n + held) / w)
    print(f"expected if it costs only the worker it holds: {expected:.1f} s; measured / expected "
          f"{t_hang / expected:.2f}")

if __name__ == "__main__":
    main()
