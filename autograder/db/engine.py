"""Opening the grade database: the URL, the SQLite pragmas, write transactions, and migrating to head.

SQLite (the default, a file in the course folder) runs in WAL mode so readers never block the writer, with a busy
timeout so several worker processes queue for the write lock instead of failing, and foreign keys on. A write
transaction takes the lock at BEGIN (IMMEDIATE), so two writers never both read and then collide on upgrade.
PostgreSQL needs none of that: its transactions and row locks do the same job.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.engine import URL, make_url

from autograder.errors import DatabaseError, NetworkError, UserError

if TYPE_CHECKING:
    from alembic.config import Config

BUSY_TIMEOUT_S = 60  # a worker waits this long for another's write to finish before giving up
CONNECT_TIMEOUT_S = 10  # a PostgreSQL server that has not answered by then is reported unreachable
WRITE = {"sparkgrade_write": True}  # execution option: this transaction will write
MIGRATIONS = Path(__file__).parent / "migrations"
SUPPORTED = ("sqlite", "postgresql")


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def describe(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except exc.ArgumentError:
        return url


def parse_url(url: str) -> URL:
    """The URL parsed, or one line saying how to write it (the mistakes people make: a bare path, two slashes,
    postgres://, another PostgreSQL driver)."""
    try:
        parsed = make_url(url)
    except exc.ArgumentError as err:
        hint = (f"for a SQLite file write sqlite:///{Path(url).resolve()}" if "://" not in url and url.strip()
                else "e.g. postgresql+psycopg://user@host/db or sqlite:////absolute/path/grades.db")
        raise UserError(f"not a database URL: {url!r} ({hint})") from err
    backend = parsed.get_backend_name()
    if backend == "postgres":
        raise UserError(f"write postgresql+psycopg:// instead of postgres:// in {describe(url)} "
                        "(SQLAlchemy knows no postgres:// scheme)")
    if backend not in SUPPORTED:
        raise UserError(f"sparkgrade stores grades in SQLite or PostgreSQL, not {backend}: {describe(url)} "
                        "(e.g. postgresql+psycopg://user@host/db)")
    if backend == "postgresql" and parsed.drivername not in ("postgresql", "postgresql+psycopg"):
        raise UserError(f"sparkgrade talks to PostgreSQL through psycopg 3: write postgresql+psycopg:// instead "
                        f"of {parsed.drivername}:// in {describe(url)}")
    if backend == "sqlite" and parsed.host:
        raise UserError(f"sqlite:// takes three slashes before a relative path and four before an absolute one: "
                        f"sqlite:///{parsed.host}{'/' + parsed.database if parsed.database else ''}")
    return parsed


def open_engine(url: str, *, readonly: bool = False) -> Engine:
    """An engine for a sparkgrade database URL; a bare postgresql:// URL means psycopg 3.

    ``readonly`` (the read commands: export, report, feedback): nothing is created, migrated or locked, and a
    SQLite file that does not exist is an error, not a new empty database."""
    parsed = parse_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise UserError("an in-memory SQLite database would lose every grade: give a file, sqlite:///path")
        path = Path(parsed.database)
        if readonly:
            return _sqlite_readonly(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            engine = create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT_S})
        except ImportError as err:  # pragma: no cover - sqlite3 is in the standard library
            raise UserError(f"cannot open {describe(url)}: {err}") from err
        _sqlite_pragmas(engine, path)
        return engine
    # A PostgreSQL server that does not answer fails within seconds, not after the OS's TCP timeout.
    connect_args: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_S}
    if readonly:
        connect_args["options"] = "-c default_transaction_read_only=on"
    try:
        return create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)
    except (ImportError, exc.NoSuchModuleError) as err:
        raise UserError("PostgreSQL needs psycopg 3: pip install 'sparkgrade[postgres]'") from err


def _sqlite_readonly(path: Path) -> Engine:
    """A SQLite file opened read-only (mode=ro): works in a read-only course folder, takes no lock file, and
    never creates the file. Transactions are plain BEGINs, so a grader writing at the same time is not blocked
    (WAL) and the reader sees whole results."""
    if not path.is_file():
        raise DatabaseError(f"no grade database at {path}: grade a lab first (`sparkgrade grade COURSE LAB`), "
                            "or check the path in --db")
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # SQLite opens the file lazily
            return conn
        except sqlite3.OperationalError:
            conn.close()
            if os.access(path.parent, os.W_OK):
                raise
            # A WAL database in a read-only folder: SQLite cannot make the -shm file it reads through. Nobody can
            # write there either, so the file cannot change under us: SQLite's immutable mode is then exact.
            return sqlite3.connect(uri + "&immutable=1", uri=True, check_same_thread=False)

    engine = create_engine("sqlite://", creator=connect)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine


# What a driver says when the server cannot be reached at all (a network failure, not a database one).
_NETWORK_SIGNS = ("connection refused", "could not translate host name", "timeout expired", "no route to host",
                  "network is unreachable", "name or service not known", "connection timed out")


def database_error(url: str, err: Exception, doing: str = "open") -> UserError:
    """One line for a failed database operation, of the kind (network or database) that says what to do."""
    first = (str(getattr(err, "orig", None) or err).strip().splitlines() or [type(err).__name__])[0]
    low = first.lower()
    if any(sign in low for sign in _NETWORK_SIGNS):
        return NetworkError(f"cannot {doing} the grade database {describe(url)}: {first} (the server cannot be "
                            "reached: is it running, and are the host and port right?)")
    if "does not exist" in low and "database" in low:
        return DatabaseError(f"no such database: {describe(url)} ({first}); check the name in --db")
    if "readonly" in low or "read-only" in low:
        return DatabaseError(f"cannot {doing} the grade database {describe(url)}: {first} (the course folder "
                             "must be writable to grade; export, report and feedback only read it)")
    return DatabaseError(f"cannot {doing} the grade database {describe(url)}: {first}")


def _sqlite_pragmas(engine: Engine, path: Path) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's BEGIN below, not the sqlite3 module, start transactions.
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
        _enter_wal(cur, path)
        cur.execute("PRAGMA synchronous = NORMAL")  # with WAL: a killed process loses nothing committed
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("sparkgrade_write") else "BEGIN")


def _enter_wal(cur: Any, path: Path) -> None:
    """Switch the file to WAL, a persistent setting that later connections find done. Converting a fresh file
    needs it to itself, and two processes converting at once can each hold the lock the other waits for until the
    busy timeout runs out ("database is locked", seen in CI). A file lock beside the database lets one process at a
    time do the switch; the rest then find WAL already set. A killed holder releases it with its last descriptor."""
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            mode = cur.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    if str(mode).lower() != "wal":
        raise DatabaseError(f"cannot put the grade database {path} in WAL mode (SQLite kept {mode!r}); "
                        "is it on a network file system?")


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration built in code: the migrations live in this package, wherever it is installed."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _driver(conn: Connection) -> Any:
    """The DB-API connection under a SQLAlchemy one (always there while ``conn`` is open)."""
    raw = conn.connection.driver_connection
    if raw is None:
        raise RuntimeError("the database connection is closed")
    return raw


# Any constant: PostgreSQL's advisory lock that lets one process at a time migrate.
_PG_MIGRATION_LOCK = 0x5350_4B47


def upgrade(engine: Engine) -> None:
    """Bring the schema to head. Safe when several processes open a fresh database at once: one migrates inside
    a single transaction holding the write lock (SQLite) or an advisory lock (PostgreSQL); the others wait and then
    find nothing to do."""
    from alembic import command

    head = head_revision()
    if current_revision(engine) == head:
        return
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        if sqlite:
            # A table rebuild in a future migration must not cascade-delete through foreign keys; the pragma
            # only takes effect outside a transaction, so set it on the raw connection before BEGIN.
            _driver(conn).execute("PRAGMA foreign_keys = OFF")
        try:
            with conn.execution_options(**WRITE).begin():
                if not sqlite:
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
                command.upgrade(alembic_config(conn), "head")
        finally:
            if sqlite:
                _driver(conn).execute("PRAGMA foreign_keys = ON")
