"""Opening the grade database: the URL, the SQLite pragmas, write transactions, and migrating to head.

SQLite (the default, a file in the course folder) runs in WAL mode so readers never block the writer, with a busy
timeout so several worker processes queue for the write lock instead of failing, and foreign keys on. A write
transaction takes the lock at BEGIN (IMMEDIATE), so two writers never both read and then collide on upgrade.
PostgreSQL needs none of that: its transactions and row locks do the same job.
"""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.engine import make_url

from autograder.errors import UserError

if TYPE_CHECKING:
    from alembic.config import Config

BUSY_TIMEOUT_S = 60  # a worker waits this long for another's write to finish before giving up
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


def open_engine(url: str) -> Engine:
    """An engine for a sparkgrade database URL; a bare postgresql:// URL means psycopg 3."""
    try:
        parsed = make_url(url)
    except exc.ArgumentError as err:
        raise UserError(f"not a database URL: {url!r} (e.g. postgresql+psycopg://user@host/db, sqlite:///path)") \
            from err
    if parsed.get_backend_name() not in SUPPORTED:
        raise UserError(f"sparkgrade stores grades in SQLite or PostgreSQL, not {parsed.get_backend_name()}: "
                        f"{describe(url)}")
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise UserError("an in-memory SQLite database would lose every grade: give a file, sqlite:///path")
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        try:
            engine = create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT_S})
        except ImportError as err:  # pragma: no cover - sqlite3 is in the standard library
            raise UserError(f"cannot open {describe(url)}: {err}") from err
        _sqlite_pragmas(engine, Path(parsed.database))
        return engine
    try:
        return create_engine(parsed, pool_pre_ping=True)
    except (ImportError, exc.NoSuchModuleError) as err:
        raise UserError("PostgreSQL needs psycopg 3: pip install 'sparkgrade[postgres]'") from err


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
        raise UserError(f"cannot put the grade database {path} in WAL mode (SQLite kept {mode!r}); "
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
