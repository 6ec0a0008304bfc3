"""The grade database behind CourseStore, on SQLite and on a real PostgreSQL server this file starts itself.

Every test taking ``db_url`` runs on both. The server is Debian's postgresql (scripts/system-deps.sh), initialised in
a throw-away folder as the postgres user, on a free localhost port, and stopped at the end; when it cannot start,
the PostgreSQL tests fail with the reason: a stand-in would prove nothing about the database a course runs on.
"""

from __future__ import annotations

import glob
import json
import multiprocessing
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import replace
from itertools import count
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, func, inspect, select
from sqlalchemy.orm import Session

from autograder.course.export import to_json
from autograder.course.totals import course_totals
from autograder.db.engine import current_revision, head_revision, open_engine, sqlite_url
from autograder.db.models import Base, CheckResultRow, Student, Submission
from autograder.db.store import CourseStore
from autograder.errors import UserError
from autograder.order import natural_key
from autograder.records import CheckResult, Flag, GradeRecord

LAB = "lab-2.4.4-moe-router"
TABLES = {"students", "assignments", "grading_runs", "submissions", "current_results", "check_results", "flags",
          "benchmark_verdicts"}


# ---------------------------------------------------------------------------------------------------------------
# A real PostgreSQL server for the session


def _pg_bindir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    found = [Path(p) for p in candidates if (Path(p) / "initdb").is_file()]
    if not found:
        on_path = shutil.which("initdb") or shutil.which("pg_ctl")
        if on_path:
            return Path(on_path).parent
        pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's postgresql "
                    "(bash scripts/system-deps.sh, or apt-get install postgresql)", pytrace=False)
    return found[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """initdb + pg_ctl in a temporary folder; each test gets its own fresh database."""

    def __init__(self) -> None:
        self.bindir = _pg_bindir()
        self.user: dict[str, object] = {}
        owner = None
        if os.geteuid() == 0:  # the server refuses to run as root
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail("running as root, the test PostgreSQL server needs the 'postgres' system user "
                            "(Debian's postgresql package creates it)", pytrace=False)
            self.user = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
        self.dir = Path(tempfile.mkdtemp(prefix="sparkgrade-pg-"))
        if owner is not None:
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = _free_port()
        self.names = count()

    def _run(self, *args: str | Path) -> None:
        try:
            proc = subprocess.run([str(a) for a in args], cwd=self.dir, capture_output=True, text=True, timeout=60,
                                  **self.user)
        except (OSError, subprocess.SubprocessError) as err:
            proc = err
        if isinstance(proc, Exception):
            pytest.fail(f"PostgreSQL could not start: {proc}", pytrace=False)
        if proc.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.exists() else ""
            pytest.fail(f"PostgreSQL could not start: {Path(str(args[0])).name} exited {proc.returncode}\n"
                        f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}\n{log}", pytrace=False)

    def start(self) -> None:
        self._run(self.bindir / "initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--locale=C", "--no-sync")
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c full_page_writes=off -c synchronous_commit=off")
        self._run(self.bindir / "pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "30", "-o", options, "start")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                           cwd=self.dir, capture_output=True, timeout=60, **self.user)
        shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        name = f"sparkgrade_{next(self.names)}"
        admin = create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        admin.dispose()
        return self.url(name)


@pytest.fixture(scope="session")
def postgres():
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path / ".sparkgrade" / "grades.db")
    return request.getfixturevalue("postgres").new_database()


# ---------------------------------------------------------------------------------------------------------------
# Records


def make_record(student: str, *, content: str = "c1", rubric: str = "v1", score: float = 1.5,
                message: str = "expected shape (2, 4), got (4, 2)", sandboxed: bool = True) -> GradeRecord:
    checks = (
        CheckResult("top_k_shape", "top_k_route", score, 2.0, "failed" if score < 2 else "passed", message,
                    "transposed: the experts are along the wrong axis", {"err": [0.1, 0.2 + 0.1, 1e-300]}),
        CheckResult("load_balance", "load_balance_loss", 0.1 + 0.2, 1.0, "passed"),
        CheckResult("capacity", "capacity_drop", 0.0, 1.0, "error", "sandbox died: ünïcödé → ∞"),
    )
    return GradeRecord(
        student=student, assignment=LAB, status="graded", score=score + 0.1 + 0.2, max_score=4.0, checks=checks,
        flags=(Flag("tampered", "locked cell 3 was edited and restored"), Flag("late", "1.5 h late")),
        content_hash=content * 8, seed=f"seed-{student}-{content}", rubric_version=rubric, sandboxed=sandboxed,
        timings={"sandbox_start_s": 0.25, "notebook_s": 3.5, "checks_s": 1.0 / 3.0, "total_s": 4.75},
        reason="", machine="spark-01",
    )


def test_record_round_trips_exactly(db_url, tmp_path):
    store = CourseStore(tmp_path, db_url)
    records = [make_record("bob"), make_record("alice", score=2.0), replace(
        make_record("carol"), status="timeout", reason="notebook ran past 600 s", checks=(), flags=())]
    for r in records:
        store.save(r, b'{"cells": []}')
    assert store.load(LAB, "bob") == records[0]
    assert store.load(LAB, "carol") == records[2]
    assert store.load(LAB, "nobody") is None
    assert store.load("lab-2.4.1-mamba-inference", "bob") is None
    assert list(store.records()) == sorted(records, key=lambda r: r.student)
    assert list(store.records("lab-2.4.1-mamba-inference")) == []
    assert [r.to_dict() for r in store.records(LAB)] == [r.to_dict() for r in sorted(records, key=lambda r: r.student)]
    assert (tmp_path / "autograded" / "bob" / LAB / f"{LAB}.ipynb").read_bytes() == b'{"cells": []}'
    store.close()


def test_untrusted_text_with_nul_and_nan_details_is_stored_alike_on_every_backend(db_url, tmp_path):
    # PostgreSQL refuses NUL in text and NaN in json: both come from what a student's code printed or returned.
    store = CourseStore(tmp_path, db_url)
    record = make_record("mallory", message="got b'\\x00' then \x00<script>")
    nan_check = replace(record.checks[1], details={"err": [float("nan"), float("inf")]})
    store.save(replace(record, checks=(record.checks[0], nan_check)), None)
    back = store.load(LAB, "mallory")
    assert back.checks[0].message == "got b'\\x00' then \ufffd<script>"
    assert str(back.checks[1].details["err"]) == "[nan, inf]"
    store.close()


def test_benchmark_verdicts_are_kept_with_the_current_result(db_url, tmp_path):
    from autograder.plausibility import Verdict

    store = CourseStore(tmp_path, db_url)
    verdicts = [Verdict(0, "decode-roofline", "error", "decode 9000 tok/s beats the memory roofline",
                        bound=812.5, value=9000.0, points=-1.0),
                Verdict(None, "file", "warning", "no perplexity recorded")]
    store.save(make_record("bob"), None, verdicts=verdicts)
    assert store.load_verdicts(LAB, "bob") == verdicts
    store.save_verdicts(LAB, "bob", verdicts[1:])
    assert store.load_verdicts(LAB, "bob") == verdicts[1:]
    store.save(make_record("bob"), None)  # a regrade without verdicts keeps the content's verdicts
    assert store.load_verdicts(LAB, "bob") == verdicts[1:]
    with pytest.raises(UserError, match="no graded submission"):
        store.save_verdicts(LAB, "nobody", verdicts)
    store.close()


# ---------------------------------------------------------------------------------------------------------------
# Attempts and regrading


def test_same_content_and_rubric_is_one_attempt_new_content_or_rubric_is_a_new_one(db_url, tmp_path):
    store = CourseStore(tmp_path, db_url)
    store.save(make_record("bob", content="c1", score=1.0), None)
    store.save(make_record("bob", content="c1", score=1.25), None)  # same content, same rubric: in place
    assert [(a.number, a.record.score) for a in store.history(LAB, "bob")] == [(1, 1.25 + 0.1 + 0.2)]
    store.save(make_record("bob", content="c2"), None)
    store.save(make_record("bob", content="c2", rubric="v2"), None)
    store.save(make_record("bob", content="c1", score=0.5), None)  # back to the first content: that attempt, current
    history = store.history(LAB, "bob")
    assert [(a.number, a.record.content_hash[:2], a.record.rubric_version, a.current) for a in history] == [
        (1, "c1", "v1", True), (2, "c2", "v1", False), (3, "c2", "v2", False)]
    assert store.load(LAB, "bob").score == 0.5 + 0.1 + 0.2
    assert len(list(store.records(LAB))) == 1
    store.close()


def test_regrading_unchanged_content_is_a_no_op_changed_content_or_rubric_is_not(db_url, tmp_path):
    store = CourseStore(tmp_path, db_url)
    first = make_record("bob", content="c1", rubric="r1")
    assert store.unchanged(LAB, "bob", first.content_hash, "r1", True) is None  # never graded
    store.save(first, None)
    assert store.unchanged(LAB, "bob", first.content_hash, "r1", True) == first  # same: skip
    assert store.unchanged(LAB, "bob", "c2" * 8, "r1", True) is None  # new content
    assert store.unchanged(LAB, "bob", first.content_hash, "r2", True) is None  # new rubric
    assert store.unchanged(LAB, "bob", first.content_hash, "r1", False) is None  # graded unsandboxed before
    store.save(make_record("bob", content="c2", rubric="r1"), None)
    store.save(make_record("bob", content="c2", rubric="r2"), None)
    assert [a.number for a in store.history(LAB, "bob")] == [1, 2, 3]
    forced = make_record("bob", content="c2", rubric="r2", score=0.25)  # --force: graded again, same attempt
    store.save(forced, None)
    assert [(a.number, a.current) for a in store.history(LAB, "bob")] == [(1, False), (2, False), (3, True)]
    assert store.load(LAB, "bob") == forced
    with Session(store.engine) as s:
        runs = Base.metadata.tables["grading_runs"]
        assert s.execute(select(runs.c.saved, runs.c.finished_at)).all() == [(4, None)]
    store.close()  # a closed store's run is finished
    with CourseStore(tmp_path, db_url) as again, Session(again.engine) as s:
        assert s.execute(select(runs.c.finished_at.is_not(None))).scalar() is True


# ---------------------------------------------------------------------------------------------------------------
# Concurrency and crashes


def _writer(course: str, url: str, worker: int, students: int, inherited: CourseStore | None) -> None:
    with inherited or CourseStore(Path(course), url) as store:
        for i in range(students):
            store.save(make_record(f"w{worker}-s{i:02d}"), None)
            store.save(make_record("shared"), None)  # every worker grades the same content: one row
        store.save(make_record("contended", content=f"w{worker}"), None)  # distinct content: one attempt each


def test_concurrent_writers_lose_nothing_and_duplicate_nothing(db_url, tmp_path):
    workers, students = 4, 6
    ctx = multiprocessing.get_context("fork")
    # Half the workers open the database themselves (racing to migrate it); half inherit a store opened before
    # the fork, as a pool of forked workers would.
    parent = CourseStore(tmp_path, db_url)
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), db_url, w, students, parent if w % 2 else None))
             for w in range(workers)]
    procs[0].start()
    parent.engine  # noqa: B018 - opened (and migrated) while worker 0 may be migrating too
    for p in procs[1:]:
        p.start()
    for p in procs:
        p.join(60)
    parent.close()
    assert [p.exitcode for p in procs] == [0] * workers
    with CourseStore(tmp_path, db_url) as store:
        names = [r.student for r in store.records(LAB)]
        expected = sorted([f"w{w}-s{i:02d}" for w in range(workers) for i in range(students)] +
                          ["shared", "contended"])
        assert names == expected
        assert [a.number for a in store.history(LAB, "shared")] == [1]
        assert [a.number for a in store.history(LAB, "contended")] == list(range(1, workers + 1))
        assert sorted(a.record.content_hash for a in store.history(LAB, "contended")) == \
            sorted(f"w{w}" * 8 for w in range(workers))
        with Session(store.engine) as s:
            assert s.scalar(select(func.count()).select_from(Submission)) == workers * students + 1 + workers
            assert s.scalar(select(func.count()).select_from(CheckResultRow)) == \
                3 * (workers * students + 1 + workers)


def _open_fresh(course: str, barrier, results) -> None:
    barrier.wait()
    try:
        with CourseStore(Path(course)) as store:
            store.engine  # noqa: B018 - connect, switch to WAL, migrate
            with store.engine.connect() as conn:
                results.put(conn.exec_driver_sql("PRAGMA journal_mode").scalar())
    except Exception as err:  # reported to the parent, which fails the test
        results.put(f"{type(err).__name__}: {err}")


def test_processes_opening_a_fresh_sqlite_database_at_once_all_get_it(tmp_path):
    # CI once failed with "database is locked": two processes switching a brand-new file to WAL together.
    ctx = multiprocessing.get_context("fork")
    for trial in range(3):
        course = tmp_path / f"c{trial}"
        barrier, results = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_open_fresh, args=(str(course), barrier, results)) for _ in range(6)]
        for p in procs:
            p.start()
        got = [results.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(10)
        assert got == ["wal"] * 6


def _killed_mid_write(course: str, url: str, marker: str) -> None:
    def hang(session, _flush_context) -> None:
        if any(isinstance(o, CheckResultRow) for o in session.new):
            Path(marker).write_text("inside the transaction")
            time.sleep(120)

    event.listen(Session, "after_flush", hang)
    store = CourseStore(Path(course), url)
    store.save(make_record("alice", content="c2", score=0.0), None)
    store.save(make_record("zoe"), None)


def test_a_writer_killed_inside_its_transaction_leaves_no_partial_record(db_url, tmp_path):
    store = CourseStore(tmp_path, db_url)
    before = make_record("alice")
    store.save(before, None)
    marker = tmp_path / "marker"
    proc = multiprocessing.get_context("fork").Process(
        target=_killed_mid_write, args=(str(tmp_path), db_url, str(marker)))
    proc.start()
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert proc.is_alive() and time.monotonic() < deadline, "the writer never reached its transaction"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)
    assert proc.exitcode == -signal.SIGKILL
    assert store.load(LAB, "alice") == before
    assert [a.number for a in store.history(LAB, "alice")] == [1]
    with Session(store.engine) as s:
        assert s.scalar(select(func.count()).select_from(CheckResultRow)) == len(before.checks)
        assert s.scalar(select(func.count()).select_from(Submission)) == 1
    # Nothing is left locked: the next writer commits at once.
    t0 = time.monotonic()
    store.save(make_record("alice", content="c2"), None)
    store.save(make_record("zoe"), None)
    assert time.monotonic() - t0 < 5
    assert [a.number for a in store.history(LAB, "alice")] == [1, 2]
    assert [r.student for r in store.records()] == ["alice", "zoe"]
    store.close()


# ---------------------------------------------------------------------------------------------------------------
# Schema and migrations


def test_migrations_from_empty_create_the_schema_the_models_describe(db_url, tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = open_engine(db_url)
    assert current_revision(engine) is None
    engine.dispose()
    store = CourseStore(tmp_path, db_url)
    engine = store.engine  # opening migrates to head
    assert current_revision(engine) == head_revision()
    assert set(inspect(engine).get_table_names()) == TABLES | {"alembic_version"}
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == [], f"models.py and the migrations differ: add a revision (python -m autograder.db revision): {diff}"
    uniques = {tuple(u["column_names"]) for u in inspect(engine).get_unique_constraints("submissions")}
    assert ("assignment_id", "student_id", "content_hash", "rubric_version") in uniques
    assert ("student_id", "assignment_id", "attempt") in uniques
    store.close()
    CourseStore(tmp_path, db_url).close()  # reopening an up-to-date database is a no-op


def test_the_default_database_is_sqlite_in_the_course_folder_in_wal_mode(tmp_path):
    store = CourseStore(tmp_path)
    store.save(make_record("bob"), None)
    assert (tmp_path / ".sparkgrade" / "grades.db").is_file()
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000
    store.close()
    assert CourseStore(tmp_path).load(LAB, "bob") == make_record("bob")


def test_an_unreachable_or_unsupported_database_is_one_line_for_the_user(tmp_path):
    refused = r"cannot open the grade database postgresql://u:\*\*\*@127.*Connection refused"
    with pytest.raises(UserError, match=refused):
        CourseStore(tmp_path, f"postgresql://u:secret@127.0.0.1:{_free_port()}/course").load(LAB, "bob")
    with pytest.raises(UserError, match="SQLite or PostgreSQL"):
        CourseStore(tmp_path, "mysql://u@host/course").load(LAB, "bob")
    with pytest.raises(UserError, match="not a database URL"):
        CourseStore(tmp_path, "grades.db").load(LAB, "bob")


# ---------------------------------------------------------------------------------------------------------------
# SQLite and PostgreSQL agree


def test_the_same_course_exports_identically_from_sqlite_and_postgresql(tmp_path, postgres, capsys):
    from autograder.cli import main

    # Names whose order differs between byte order and a locale's collation, and floats that do not round-trip
    # through decimal text unless stored as doubles.
    students = ["Zoe", "alice", "_bob", "bob-2", "Bob", "émile", "zed"]
    records = [make_record(s, score=i / 7) for i, s in enumerate(students)]
    records.append(replace(make_record("alice"), assignment="lab-2.4.1-mamba-inference", status="invalid",
                           checks=(), reason="not a notebook"))
    urls = {"sqlite": sqlite_url(tmp_path / "sqlite" / "grades.db"), "postgresql": postgres.new_database()}
    exports = {}
    for name, url in urls.items():
        with CourseStore(tmp_path, url) as store:
            for r in records:
                store.save(r, None)
            stored = list(store.records())
            # the CLI's JSON export adds each record's similar submissions (none here: no submitted notebooks)
            exports[name] = to_json(stored, course_totals(tmp_path, stored), [])
        out = tmp_path / f"{name}.json"
        assert main(["export", str(tmp_path), "--db", url, "--format", "json", "-o", str(out)]) == 0
        assert out.read_text() == exports[name]
        assert main(["export", str(tmp_path), "--db", url, "--assignment", LAB, "--format", "csv"]) == 0
        exports[f"{name}-csv"] = capsys.readouterr().out
    assert exports["sqlite"] == exports["postgresql"]
    assert exports["sqlite-csv"] == exports["postgresql-csv"]
    # students in natural order (s7 before s10), case-insensitively: the same on both backends
    expected = [r.to_export() for r in sorted(records, key=lambda r: (r.assignment, natural_key(r.student)))]
    rows = json.loads(exports["sqlite"])  # each row also carries its total (autograder.course.totals)
    assert [{k: row[k] for k in e} for row, e in zip(rows, expected, strict=True)] == expected


def test_students_are_stored_once_whatever_the_backend(db_url, tmp_path):
    with CourseStore(tmp_path, db_url) as store:
        store.save(make_record("bob"), None)
        store.save(replace(make_record("bob"), assignment="lab-2.4.1-mamba-inference"), None)
        with Session(store.engine) as s:
            assert s.scalars(select(Student.name)).all() == ["bob"]


def test_opening_retries_a_database_locked_by_a_racing_process(tmp_path, monkeypatch):
    # SQLite can answer "database is locked" without waiting out its busy timeout (e.g. two processes setting up
    # a new file); opening tries again instead of failing the grader.
    from sqlite3 import OperationalError as SqliteError

    from sqlalchemy import exc

    from autograder.db import store as store_module

    real, failures = store_module.upgrade, []

    def flaky(engine):
        if len(failures) < store_module.OPEN_ATTEMPTS - 1:
            failures.append(1)
            raise exc.OperationalError("PRAGMA journal_mode = WAL", {}, SqliteError("database is locked"))
        real(engine)

    monkeypatch.setattr(store_module, "upgrade", flaky)
    with CourseStore(tmp_path) as store:
        store.save(make_record("alice"), None)
        assert store.load(LAB, "alice") is not None
    assert len(failures) == store_module.OPEN_ATTEMPTS - 1

    def locked(engine):
        failures.append(1)
        raise exc.OperationalError("PRAGMA journal_mode = WAL", {}, SqliteError("database is locked"))

    failures.clear()
    monkeypatch.setattr(store_module, "upgrade", locked)
    with pytest.raises(UserError, match="database is locked"):
        CourseStore(tmp_path / "other").engine  # noqa: B018 - out of attempts: one clear error
    assert len(failures) == store_module.OPEN_ATTEMPTS
