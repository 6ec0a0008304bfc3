"""Where graded results live: the grade database, plus the files nbgrader and the sandbox seeding expect on disk.

    .sparkgrade/secret                       per-course secret that seeds each submission's check inputs
    .sparkgrade/grades.db                    the default database (SQLite, WAL); or any PostgreSQL URL (--db)
    autograded/<student>/<lab>/<lab>.ipynb   the executed (repaired) notebook, where nbgrader keeps its own

Each save is one transaction: a killed grader leaves the previous grade or the new one, never half of one. Saving
the same (student, lab, content, rubric) again updates that attempt in place, so a resumed or concurrent batch
cannot duplicate a grade; new content (or a new rubric) is a new attempt, and the last saved attempt is current.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import platform
import random
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy import Engine, exc, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.interfaces import LoaderOption

from autograder.db.engine import (
    WRITE,
    current_revision,
    database_error,
    describe,
    head_revision,
    open_engine,
    sqlite_url,
    upgrade,
)
from autograder.db.models import (
    Assignment,
    CheckResultRow,
    CurrentResult,
    FlagRow,
    GradingRun,
    Student,
    Submission,
    VerdictRow,
)
from autograder.errors import DatabaseError, FileSystemError, UserError
from autograder.order import natural_key
from autograder.records import CheckResult, CheckStatus, Flag, GradeRecord, SubmissionStatus

if TYPE_CHECKING:
    from autograder.plausibility import Verdict

T = TypeVar("T")
OPEN_ATTEMPTS = 3  # opening (connect, WAL, migrate) that lost a race with another process is retried
WRITE_ATTEMPTS = 8  # a write that lost a race (unique key, deadlock, lock timeout) is retried this many times


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write the whole file or nothing. ``mode``: private by default (grader data); pages and reports pass 0o644
    so a web server or a TA's account can read them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class Attempt:
    """One graded attempt of a student's lab, oldest first in CourseStore.history."""

    number: int
    graded_at: datetime
    current: bool
    record: GradeRecord


class CourseStore:
    """The engine's view of storage. ``db_url`` defaults to SQLite in the course folder; the database is created
    and migrated to the current schema on first use. ``readonly`` (export, report, feedback): the database must
    exist at the current schema, and nothing is created, migrated or written."""

    def __init__(self, course_dir: Path, db_url: str | None = None, *, readonly: bool = False) -> None:
        self.course_dir = Path(course_dir)
        self.root = self.course_dir / ".sparkgrade"
        self.db_url = db_url or sqlite_url(self.root / "grades.db")
        self.default_db = db_url is None
        self.readonly = readonly
        self._engine: Engine | None = None
        self._run_id: int | None = None
        self._pid = os.getpid()

    # -- lifetime -------------------------------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        if self._engine is not None and self._pid != os.getpid():
            # A forked worker must not share its parent's connections: drop them here, leave them open there.
            self._engine.dispose(close=False)
            self._engine = None
            self._run_id = None
        if self._engine is None and self.readonly:
            self._engine = self._open_readonly()
            self._pid = os.getpid()
        if self._engine is None:
            for attempt in range(OPEN_ATTEMPTS):
                try:
                    engine = open_engine(self.db_url)
                except OSError as err:  # the course folder cannot hold the database (read-only, full, no access)
                    raise FileSystemError(f"cannot create the grade database {describe(self.db_url)}: "
                                          f"{err.strerror or err} (the course folder must be writable to grade)") \
                        from err
                try:
                    upgrade(engine)
                    break
                except OSError as err:  # the lock file beside a SQLite database cannot be made
                    engine.dispose()
                    raise FileSystemError(f"cannot open the grade database {describe(self.db_url)} for writing: "
                                          f"{err.strerror or err} (the course folder must be writable to grade)") \
                        from err
                except exc.OperationalError as err:
                    engine.dispose()
                    first = str(err.orig or err).strip().splitlines()[0]
                    if "locked" in first and attempt + 1 < OPEN_ATTEMPTS:  # another process is opening it too
                        time.sleep(0.2 * (attempt + 1) * (1 + random.random()))
                        continue
                    raise database_error(self.db_url, err) from err
            self._engine = engine
            self._pid = os.getpid()
        return self._engine

    def _open_readonly(self) -> Engine:
        if self.default_db and not (self.root / "grades.db").is_file():  # a course nobody has graded yet
            raise UserError(f"no graded submissions in {self.course_dir}: run `sparkgrade grade {self.course_dir} LAB` "
                            "first")
        engine = open_engine(self.db_url, readonly=True)
        try:
            found = current_revision(engine)
        except exc.DBAPIError as err:
            engine.dispose()
            raise database_error(self.db_url, err) from err
        head = head_revision()
        if found is None:
            engine.dispose()
            raise DatabaseError(f"{describe(self.db_url)} holds no sparkgrade grades (nothing graded yet, or not a "
                                "grade database): check --db, or run `sparkgrade grade` first")
        if found != head:
            engine.dispose()
            raise DatabaseError(f"the grade database {describe(self.db_url)} has schema {found}, this sparkgrade "
                                f"reads {head}: run `python -m autograder.db upgrade URL` (or any `sparkgrade "
                                "grade`) to migrate it")
        return engine

    def close(self) -> None:
        """Mark this process's grading run finished and release the connections."""
        if self._engine is None:
            return
        if self._run_id is not None:
            run_id = self._run_id
            self._write(lambda s: s.execute(update(GradingRun).where(GradingRun.id == run_id)
                                            .values(finished_at=_now())))
            self._run_id = None
        self._engine.dispose()
        self._engine = None

    def __enter__(self) -> CourseStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the secret -----------------------------------------------------------------------------------------

    def secret(self) -> bytes:
        path = self.root / "secret"
        if not path.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write(path, secrets.token_hex(32).encode())
            path.chmod(0o600)
        return path.read_bytes().strip()

    def seed_for(self, student: str, lab: str, content_hash: str) -> str:
        """Inputs differ per submission yet a regrade of the same content reproduces them exactly."""
        return hmac.new(self.secret(), f"{student}\0{lab}\0{content_hash}".encode(), hashlib.sha256).hexdigest()[:32]

    # -- writing --------------------------------------------------------------------------------------------

    def begin_run(self, lab: str | None = None, *, force: bool = False) -> int:
        """Record a grading run (this process); later saves point at it. save() starts one when none is open."""
        def insert(session: Session) -> int:
            run = GradingRun(started_at=_now(), machine=platform.node(), pid=os.getpid(), assignment=lab,
                             force=force, saved=0)
            session.add(run)
            session.flush()
            return run.id

        self._run_id = self._write(insert)
        return self._run_id

    def save(self, record: GradeRecord, executed_notebook: bytes | None,
             verdicts: Sequence[Verdict] | None = None) -> None:
        """Store a graded submission (and its benchmark verdicts, when given) as the student's current result."""
        if executed_notebook is not None:
            atomic_write(self.course_dir / "autograded" / record.student / record.assignment /
                         f"{record.assignment}.ipynb", executed_notebook)
        if self._run_id is None:
            self.begin_run(record.assignment)
        kept = record.verdicts if verdicts is None else verdicts  # grading puts them on the record
        self._write(lambda session: self._save(session, record, kept))

    def save_verdicts(self, lab: str, student: str, verdicts: Sequence[Verdict]) -> None:
        """Replace the benchmark verdicts of the student's current result."""
        def replace(session: Session) -> None:
            sub = self._current(session, lab, student)
            if sub is None:
                raise UserError(f"no graded submission of {lab} for {student} to attach benchmark verdicts to")
            sub.verdicts.clear()
            session.flush()
            sub.verdicts.extend(_verdict_rows(verdicts))

        self._write(replace)

    def _save(self, session: Session, record: GradeRecord, verdicts: Sequence[Verdict] | None) -> None:
        student_id = self._ensure(session, Student, record.student)
        assignment_id = self._ensure(session, Assignment, record.assignment)
        # One writer per student at a time (SQLite's write lock already serialises everything): the attempt
        # number below is read and then used.
        session.execute(select(Student.id).where(Student.id == student_id).with_for_update())
        sub = session.scalars(select(Submission).where(
            Submission.student_id == student_id, Submission.assignment_id == assignment_id,
            Submission.content_hash == record.content_hash, Submission.rubric_version == record.rubric_version,
        )).one_or_none()
        if sub is None:
            last = session.scalar(select(func.max(Submission.attempt)).where(
                Submission.student_id == student_id, Submission.assignment_id == assignment_id))
            sub = Submission(student_id=student_id, assignment_id=assignment_id, attempt=(last or 0) + 1)
            session.add(sub)
        else:  # a forced regrade, or a run that re-did what a killed one had committed: replace in place
            sub.checks.clear()
            sub.flags.clear()
            if verdicts is not None:
                sub.verdicts.clear()
            session.flush()
        sub.graded_at = _now()
        sub.content_hash = record.content_hash
        sub.status = record.status
        sub.score = record.score
        sub.max_score = record.max_score
        sub.run_time_s = record.timings.get("total_s")
        sub.timings = dict(record.timings)
        sub.machine = record.machine
        sub.rubric_version = record.rubric_version
        sub.seed = record.seed
        sub.sandboxed = record.sandboxed
        sub.reason = record.reason
        sub.grading_run_id = self._run_id
        sub.checks.extend(
            CheckResultRow(position=i, check_id=c.id, function=c.function, points=c.points, max_points=c.max_points,
                           status=c.status, message=c.message, diagnosis=c.diagnosis, details=dict(c.details))
            for i, c in enumerate(record.checks))
        sub.flags.extend(FlagRow(position=i, kind=f.kind, message=f.message) for i, f in enumerate(record.flags))
        if verdicts is not None:
            sub.verdicts.extend(_verdict_rows(verdicts))
        session.flush()
        insert = _insert_for(session)
        session.execute(insert(CurrentResult).values(student_id=student_id, assignment_id=assignment_id,
                                                     submission_id=sub.id)
                        .on_conflict_do_update(index_elements=["student_id", "assignment_id"],
                                               set_={"submission_id": sub.id}))
        if self._run_id is not None:
            session.execute(update(GradingRun).where(GradingRun.id == self._run_id)
                            .values(saved=GradingRun.saved + 1))

    @staticmethod
    def _ensure(session: Session, model: type[Student] | type[Assignment], name: str) -> int:
        insert = _insert_for(session)
        session.execute(insert(model).values(name=name).on_conflict_do_nothing(index_elements=["name"]))
        return session.scalars(select(model.id).where(model.name == name)).one()

    def _write(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one write transaction, retrying when it lost a race to another writer."""
        if self.readonly:
            raise AssertionError("a read-only CourseStore was asked to write")
        engine = self.engine.execution_options(**WRITE)
        for attempt in range(WRITE_ATTEMPTS):
            try:
                with Session(engine, expire_on_commit=False) as session, session.begin():
                    return work(session)
            except (exc.IntegrityError, exc.OperationalError) as err:
                if attempt == WRITE_ATTEMPTS - 1:
                    if isinstance(err, exc.OperationalError):
                        raise database_error(self.db_url, err, "write to") from err
                    raise
                time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
        raise AssertionError("unreachable")

    # -- reading --------------------------------------------------------------------------------------------

    def load(self, lab: str, student: str) -> GradeRecord | None:
        with Session(self.engine) as session:
            sub = self._current(session, lab, student)
            return None if sub is None else _record(sub)

    def unchanged(self, lab: str, student: str, content_hash: str, rubric_version: str,
                  sandboxed: bool) -> GradeRecord | None:
        """The current result when it graded this very content under this rubric in the same mode: regrading it
        would be a no-op (unless forced)."""
        old = self.load(lab, student)
        if old is not None and (old.content_hash, old.rubric_version, old.sandboxed) == (
                content_hash, rubric_version, sandboxed):
            return old
        return None

    def records(self, lab: str | None = None) -> Iterator[GradeRecord]:
        """Every current result (of one lab), by lab then student in natural order (s7 before s10), the same on
        every backend."""
        with Session(self.engine) as session:
            query = (select(Submission).join(CurrentResult, CurrentResult.submission_id == Submission.id)
                     .join(Submission.assignment).options(*_eager()))
            if lab is not None:
                query = query.where(Assignment.name == lab)
            found = [_record(sub) for sub in session.scalars(query)]
        yield from sorted(found, key=lambda r: (r.assignment, natural_key(r.student)))

    def history(self, lab: str, student: str) -> list[Attempt]:
        with Session(self.engine) as session:
            current = self._current(session, lab, student)
            subs = session.scalars(
                select(Submission).join(Submission.student).join(Submission.assignment)
                .where(Student.name == student, Assignment.name == lab).order_by(Submission.attempt)
                .options(*_eager()))
            return [Attempt(s.attempt, s.graded_at, current is not None and s.id == current.id, _record(s))
                    for s in subs]

    def load_verdicts(self, lab: str, student: str) -> list[Verdict]:
        with Session(self.engine) as session:
            sub = self._current(session, lab, student)
            if sub is None:
                return []
            return [_verdict(v) for v in sub.verdicts]

    @staticmethod
    def _current(session: Session, lab: str, student: str) -> Submission | None:
        return session.scalars(
            select(Submission).join(CurrentResult, CurrentResult.submission_id == Submission.id)
            .join(Submission.student).join(Submission.assignment)
            .where(Student.name == student, Assignment.name == lab).options(*_eager())).one_or_none()


def _now() -> datetime:
    return datetime.now(UTC)


def _insert_for(session: Session) -> Callable[..., Any]:
    """INSERT ... ON CONFLICT, which both supported backends spell the same way through their own dialect."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def _eager() -> tuple[LoaderOption, ...]:
    return (selectinload(Submission.checks), selectinload(Submission.flags), selectinload(Submission.student),
            selectinload(Submission.assignment), selectinload(Submission.verdicts))


def _verdict_rows(verdicts: Sequence[Verdict]) -> list[VerdictRow]:
    return [VerdictRow(position=i, record_index=v.record, rule=v.rule, severity=v.severity, message=v.message,
                       bound=v.bound, value=v.value, points=v.points) for i, v in enumerate(verdicts)]


def _record(sub: Submission) -> GradeRecord:
    return GradeRecord(
        student=sub.student.name, assignment=sub.assignment.name, status=cast(SubmissionStatus, sub.status),
        score=sub.score,
        max_score=sub.max_score,
        checks=tuple(CheckResult(id=c.check_id, function=c.function, points=c.points, max_points=c.max_points,
                                 status=cast(CheckStatus, c.status), message=c.message, diagnosis=c.diagnosis,
                                 details=c.details)
                     for c in sub.checks),
        flags=tuple(Flag(kind=f.kind, message=f.message) for f in sub.flags),
        content_hash=sub.content_hash, seed=sub.seed, rubric_version=sub.rubric_version, sandboxed=sub.sandboxed,
        timings=dict(sub.timings), reason=sub.reason, machine=sub.machine,
        verdicts=tuple(_verdict(v) for v in sub.verdicts) or None,  # none stored reads as "not judged"
    )


def _verdict(v: VerdictRow) -> Verdict:
    from autograder.plausibility import Verdict

    return Verdict(record=v.record_index, rule=v.rule, severity=v.severity, message=v.message,  # type: ignore[arg-type]
                   bound=v.bound, value=v.value, points=v.points)
