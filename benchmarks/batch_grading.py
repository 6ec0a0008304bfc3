"""Batch grading throughput: the same 24 submissions of lab 2.4.4 (tiny profile), graded four ways on this machine.

    nbgrader   `nbgrader autograde` (its own visible tests, in the student's kernel, strictly sequential)
    floor      the same notebooks executed bare with nbclient, one after the other, in one process, no grading
    in-process the hidden checks alone, on the course's own answers, in this process: no sandbox, no kernel, no
               store (benchmarks/grading_phases.py's floor), one submission after the other
    sparkgrade `sparkgrade grade` (sandbox per submission, hidden checks, diagnosis) with 1 and 2 local workers,
               and on a 2-worker Dask LocalCluster

The class is the demo class of the lab (correct, partly wrong, cheating, late) repeated to 24 students.
``--before DIR`` also times `sparkgrade grade` (2 workers) from another source tree, e.g. the main branch
unpacked by `git archive main | tar -x -C DIR`, so a change is measured against what it changes in the same run.
Usage:
    python benchmarks/batch_grading.py [--students 24] [--dir /tmp/sparkgrade-bench] [--before DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from _common import demo_course, fresh_copy, timed

LAB = "lab-2.4.4-moe-router"


def floor(course: Path) -> float:
    """Execute every submitted notebook bare (nbclient, fresh kernel each), in this one process."""
    import nbclient
    import nbformat

    models = course / "source" / LAB / "models"
    os.environ["SPARKGRADE_MODELS"] = str(models)
    t0 = time.perf_counter()
    for path in sorted((course / "submitted").glob(f"*/{LAB}/{LAB}.ipynb")):
        nb = nbformat.read(path, as_version=4)
        nbclient.NotebookClient(nb, timeout=600, allow_errors=True,
                                resources={"metadata": {"path": str(path.parent)}}).execute()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=24)
    parser.add_argument("--dir", default="/tmp/sparkgrade-bench")
    parser.add_argument("--skip", nargs="*", default=[], help="nbgrader floor inprocess w1 w2 dask")
    parser.add_argument("--before", type=Path, default=None, help="another source tree to time too (2 workers)")
    args = parser.parse_args()
    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    course = demo_course(root / "course", LAB, args.students)
    n = args.students
    results: dict[str, float] = {}
    py = [sys.executable, "-m"]
    if "nbgrader" not in args.skip:
        c = fresh_copy(course, root / "nbgrader")
        results["nbgrader autograde"] = timed([*py, "nbgrader", "autograde", LAB, "--force", "--log-level=ERROR",
                                               "--Execute.timeout=600"], c)
    if "floor" not in args.skip:
        results["floor: bare execution"] = floor(fresh_copy(course, root / "floor"))
    if "inprocess" not in args.skip:
        from grading_phases import inprocess_floor

        results["floor: hidden checks in-process"] = sum(inprocess_floor(fresh_copy(course, root / "inproc"), LAB))
    if args.before is not None:
        c = fresh_copy(course, root / "before")
        results[f"before ({args.before.name}), 2 workers"] = timed(
            [*py, "autograder.cli", "grade", str(c), LAB, "--workers", "2"], c, source=args.before.resolve())
    for workers in (1, 2):
        if f"w{workers}" not in args.skip:
            c = fresh_copy(course, root / f"w{workers}")
            results[f"sparkgrade, {workers} worker(s)"] = timed(
                [*py, "autograder.cli", "grade", str(c), LAB, "--workers", str(workers)], c)
    if "dask" not in args.skip:
        from distributed import LocalCluster

        c = fresh_copy(course, root / "dask")
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc:
            results["sparkgrade, Dask LocalCluster (2 workers)"] = timed(
                [*py, "autograder.cli", "grade", str(c), LAB, "--scheduler", lc.scheduler_address], c)
    base = results.get("nbgrader autograde")
    bare = results.get("floor: bare execution")
    inproc = results.get("floor: hidden checks in-process")
    load = os.getloadavg()
    print(f"{n} submissions of {LAB}, {os.cpu_count()} cores, load at the end {load[0]:.1f} {load[1]:.1f} "
          f"{load[2]:.1f}")
    print(f"{'run':45} {'wall s':>8} {'s/sub':>7} {'vs nbgrader':>12} {'vs bare':>8} {'x in-process':>13}")
    for name, wall in results.items():
        vs_nb = f"{base / wall:.2f}x" if base else "-"
        vs_floor = f"{wall / bare - 1:+.0%}" if bare else "-"
        vs_inproc = f"{wall / inproc:.2f}x" if inproc else "-"
        print(f"{name:45} {wall:8.1f} {wall / n:7.2f} {vs_nb:>12} {vs_floor:>8} {vs_inproc:>13}")


if __name__ == "__main__":
    main()
