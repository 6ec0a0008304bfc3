"""The distributed path, run for real on this machine: a Dask LocalCluster grades generated submissions of one lab
(sandbox, hidden checks, as `sparkgrade grade --scheduler ADDRESS --db URL` does) and every result is stored in a
PostgreSQL server started for the run (initdb + pg_ctl in a temporary folder, as tests/test_store.py starts it).

Prints the throughput (submissions per minute of wall time), the database's share of the wall time (every
CourseStore call the batch makes: opening and migrating the schema, lookups of already-graded content, saves,
the run's bookkeeping) and of the batch process's CPU time, and the median save. The class is the lab's demo class
(correct, partly wrong, cheating, late) repeated to --students, so the mix of passing and failing checks is
realistic.
Usage (PostgreSQL's server binaries from Debian's postgresql package; as root, a 'postgres' system user):
    python benchmarks/dask_postgres.py [--students 200] [--workers 2] [--lab lab-2.4.4-moe-router]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

DB_METHODS = ("unchanged", "save", "begin_run", "close", "records")


def time_store(spent: dict[str, list[float]]) -> None:
    """Wrap the CourseStore methods the batch calls, so every second spent in the database is counted."""
    from autograder.db.store import CourseStore

    for name in DB_METHODS:
        real = getattr(CourseStore, name)

        def timed(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return _real(*args, **kwargs)
            finally:
                spent[_name].append(time.perf_counter() - t0)

        setattr(CourseStore, name, functools.wraps(real)(timed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", default="lab-2.4.4-moe-router")
    parser.add_argument("--students", type=int, default=200)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="Dask worker processes")
    parser.add_argument("--dir", default="/tmp/sparkgrade-dask-pg")
    args = parser.parse_args()

    from _common import demo_course
    from distributed import LocalCluster
    from test_store import PostgresServer

    from autograder.batch import grade_course
    from autograder.db.store import CourseStore

    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    course = demo_course(root / args.lab / "course", args.lab, args.students)
    spent: dict[str, list[float]] = defaultdict(list)
    time_store(spent)
    server = PostgresServer()
    server.start()
    try:
        url = server.new_database()
        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster:
            cpu0, t0 = time.process_time(), time.perf_counter()
            records = grade_course(course, args.lab, db_url=url, scheduler=cluster.scheduler_address)
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        with CourseStore(course, url, readonly=True) as store:
            stored = sum(1 for _ in store.records(args.lab))
    finally:
        server.stop()
    n = len(records)
    statuses: dict[str, int] = defaultdict(int)
    for r in records:
        statuses[r.status] += 1
    db_s = sum(sum(v) for k, v in spent.items() if k not in ("records", "begin_run"))  # begin_run: inside save
    saves = spent["save"]
    load = os.getloadavg()
    print(f"{args.lab}: {n} submissions ({dict(statuses)}), {stored} stored in PostgreSQL, Dask LocalCluster "
          f"{args.workers} worker processes x 1 thread, {os.cpu_count()} cores, load {load[0]:.1f} {load[1]:.1f}")
    print(f"wall {wall:.1f} s: {n / wall * 60:.1f} submissions/min, {wall / max(n, 1):.2f} s/submission")
    print(f"database: {db_s:.2f} s in all = {db_s / wall:.1%} of the wall time, {db_s / max(cpu, 1e-9):.1%} of the "
          f"batch process's CPU time ({cpu:.1f} s); median save {statistics.median(saves) * 1000:.1f} ms "
          f"over {len(saves)} saves")
    for name in DB_METHODS:
        if spent.get(name) and name != "records":
            print(f"  {name:10} {len(spent[name]):5d} calls {sum(spent[name]):8.3f} s")


if __name__ == "__main__":
    main()
