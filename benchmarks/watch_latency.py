"""Submit-to-feedback time of `sparkgrade watch` for lab 2.4.4 (tiny profile), against grading the same submission
with `sparkgrade grade` in the same run.

One student, nbgrader's exchange in a temporary folder. The watch runs as the instructor would run it
(`sparkgrade watch COURSE LAB --interval 1`, its own process; it warms the lab before its first line, so the
first trial starts once the watch is ready and should cost what the others do). Each trial the student
edits the notebook, runs `nbgrader submit`, and the clock stops when the feedback page is in the exchange (what
`nbgrader fetch_feedback` then copies; checked once per trial). The baseline: `sparkgrade grade --force` of the
same submission, a cold process, after the trials. Usage:
    python benchmarks/watch_latency.py [--trials 3] [--dir /tmp/sparkgrade-watch-bench]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

LAB = "lab-2.4.4-moe-router"
COURSE_ID = "efficient-architectures"


def env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def nbgrader(cwd: Path, exchange: Path, *args: str) -> None:
    cmd = [sys.executable, "-m", "nbgrader", *args, f"--Exchange.root={exchange}",
           f"--Exchange.cache={cwd / '.nbgrader-cache'}", "--log-level=WARN"]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env())
    if proc.returncode != 0:
        raise SystemExit(f"nbgrader {args[0]} failed: {proc.stderr[-1500:]}")


def solve(path: Path, source: Path, trial: int) -> None:
    """The course's answers, plus a comment that makes each trial's content new."""
    import nbformat

    answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in nbformat.read(source, as_version=4).cells
               if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code"}
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in answers:
            cell.source = answers[gid] + f"\n# trial {trial}\n"
    nbformat.write(nb, path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--dir", default="/tmp/sparkgrade-watch-bench")
    args = parser.parse_args()
    from autograder.course.create import init_course

    root = Path(args.dir)
    if root.exists():
        shutil.rmtree(root)
    course, exchange, home = root / "course", root / "exchange", root / "ada"
    exchange.mkdir(parents=True)
    home.mkdir()
    init_course(course, [LAB])
    with (course / "nbgrader_config.py").open("a") as f:
        f.write(f"\nc.Exchange.root = {str(exchange)!r}\nc.Exchange.cache = {str(root / 'cache')!r}\n")
    nbgrader(course, exchange, "release_assignment", LAB, f"--course={COURSE_ID}")
    nbgrader(home, exchange, "fetch_assignment", LAB, f"--course={COURSE_ID}")
    outbox = exchange / COURSE_ID / "feedback"

    watcher = subprocess.Popen([sys.executable, "-m", "autograder.cli", "watch", str(course), LAB, "--interval", "1"],
                               env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert watcher.stdout is not None
        print(watcher.stdout.readline().strip())  # "warmed ..." (or "watching ..."): the process is ready
        latencies = []
        for trial in range(args.trials):
            solve(home / LAB / f"{LAB}.ipynb", course / "source" / LAB / f"{LAB}.ipynb", trial)
            before = set(outbox.glob("*.html")) if outbox.is_dir() else set()
            t0 = time.perf_counter()
            nbgrader(home, exchange, "submit", LAB, f"--course={COURSE_ID}", "--CourseDirectory.student_id=ada")
            while not (set(outbox.glob("*.html")) - before if outbox.is_dir() else set()):
                if watcher.poll() is not None:
                    raise SystemExit(f"the watch stopped: {watcher.stdout.read()[-1500:]}")
                time.sleep(0.2)
            latencies.append(time.perf_counter() - t0)
            print(f"trial {trial + 1}: submit -> feedback in the exchange {latencies[-1]:.1f} s", flush=True)
        nbgrader(home, exchange, "fetch_feedback", LAB, f"--course={COURSE_ID}", "--CourseDirectory.student_id=ada")
        pages = sorted((home / LAB / "feedback").glob(f"*/{LAB}.html"))
        assert len(pages) == args.trials, pages
    finally:
        watcher.terminate()
        watcher.wait(30)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "autograder.cli", "grade", str(course), LAB, "--force"], env=env(),
                   check=True, capture_output=True)
    grade = time.perf_counter() - t0
    median = statistics.median(latencies)
    print(f"submit -> feedback: median {median:.1f} s (trials {', '.join(f'{x:.1f}' for x in latencies)}); "
          f"`sparkgrade grade` of the same submission, cold: {grade:.1f} s; ratio {median / grade:.2f}; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
