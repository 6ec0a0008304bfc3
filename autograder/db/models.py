"""The grade database: who, which lab, each graded attempt, and what its checks, flags and benchmark verdicts said.

    students ─┐
              ├─< submissions >── grading_runs        one row per graded (student, lab, content, rubric)
 assignments ─┘        │  ├─< check_results                 attempt counts distinct gradings 1, 2, 3...
                       │  ├─< flags
                       │  └─< benchmark_verdicts
 current_results ──────┘  (student, assignment) -> the submission whose grade counts now

Two constraints make concurrent and resumed batches safe: a (student, assignment, content_hash, rubric_version)
row exists at most once (a regrade of the same content under the same rubric updates it in place), and each
(student, assignment) has one current result. Changing a table here needs a migration in migrations/versions/
(`python -m autograder.db revision -m "what changed"`); tests/test_store.py fails while models and migrations differ.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Deterministic constraint names, so migrations can name what they alter on SQLite and PostgreSQL alike.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class SafeText(TypeDecorator[str]):
    """Text that PostgreSQL accepts: it refuses NUL characters, which an untrusted message may carry. Replaced on
    every backend alike, so SQLite and PostgreSQL give the same exports."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else value.replace("\x00", "\ufffd")


class JSONText(TypeDecorator[Any]):
    """JSON kept as exact text (Python's json, NaN and infinities included), identical on every backend;
    PostgreSQL's json types would refuse NaN. Only the engine reads it back, nothing queries inside it."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else json.dumps(value, sort_keys=True)

    def process_result_value(self, value: str | None, dialect: Any) -> Any:
        return None if value is None else json.loads(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {str: String(255), float: Double()}


class Student(Base):
    __tablename__ = "students"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(unique=True)


class Assignment(Base):
    """An nbgrader assignment: one lab, named by its lab id."""

    __tablename__ = "assignments"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(unique=True)


class GradingRun(Base):
    """One `sparkgrade grade` process (or batch worker). finished_at stays empty when it was killed: the next run
    grades what it did not, because only committed submissions count."""

    __tablename__ = "grading_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    machine: Mapped[str]
    pid: Mapped[int]
    assignment: Mapped[str | None]  # the lab it was asked to grade, when one
    force: Mapped[bool] = mapped_column(Boolean, default=False)
    saved: Mapped[int] = mapped_column(Integer, default=0)  # submissions it committed


class Submission(Base):
    """One graded attempt: the content that was graded, under which rubric, and the result."""

    __tablename__ = "submissions"
    __table_args__ = (
        UniqueConstraint("student_id", "assignment_id", "attempt", name="uq_submissions_attempt"),
        # The idempotence key: the same content under the same rubric is graded into one row, never two.
        UniqueConstraint("assignment_id", "student_id", "content_hash", "rubric_version",
                         name="uq_submissions_content"),
        CheckConstraint("status IN ('graded', 'error', 'timeout', 'invalid')", name="status"),
        CheckConstraint("attempt >= 1", name="attempt"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("students.id"))
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id"))
    attempt: Mapped[int]
    graded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    content_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    score: Mapped[float]
    max_score: Mapped[float]
    run_time_s: Mapped[float | None]
    timings: Mapped[dict[str, float]] = mapped_column(JSONText)
    machine: Mapped[str]
    rubric_version: Mapped[str]
    seed: Mapped[str] = mapped_column(String(64))
    sandboxed: Mapped[bool]
    reason: Mapped[str] = mapped_column(SafeText)
    grading_run_id: Mapped[int | None] = mapped_column(ForeignKey("grading_runs.id", ondelete="SET NULL"))

    student: Mapped[Student] = relationship()
    assignment: Mapped[Assignment] = relationship()
    checks: Mapped[list[CheckResultRow]] = relationship(order_by="CheckResultRow.position",
                                                        cascade="all, delete-orphan", passive_deletes=True)
    flags: Mapped[list[FlagRow]] = relationship(order_by="FlagRow.position", cascade="all, delete-orphan",
                                                passive_deletes=True)
    verdicts: Mapped[list[VerdictRow]] = relationship(order_by="VerdictRow.position",
                                                      cascade="all, delete-orphan", passive_deletes=True)


class CurrentResult(Base):
    """Which attempt counts for (student, assignment): the last one saved."""

    __tablename__ = "current_results"

    student_id: Mapped[int] = mapped_column(ForeignKey("students.id"), primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id"), primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"), unique=True)

    submission: Mapped[Submission] = relationship()


class CheckResultRow(Base):
    __tablename__ = "check_results"
    __table_args__ = (
        UniqueConstraint("submission_id", "position"),
        CheckConstraint("status IN ('passed', 'failed', 'error')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"))
    position: Mapped[int]
    check_id: Mapped[str]
    function: Mapped[str]
    points: Mapped[float]
    max_points: Mapped[float]
    status: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(SafeText)
    diagnosis: Mapped[str] = mapped_column(SafeText)
    details: Mapped[dict[str, Any]] = mapped_column(JSONText)


class FlagRow(Base):
    __tablename__ = "flags"
    __table_args__ = (UniqueConstraint("submission_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"))
    position: Mapped[int]
    kind: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(SafeText)


class VerdictRow(Base):
    """A benchmark plausibility verdict (autograder.plausibility.Verdict) on the submission's benchmarks.json."""

    __tablename__ = "benchmark_verdicts"
    __table_args__ = (UniqueConstraint("submission_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"))
    position: Mapped[int]
    record_index: Mapped[int | None]  # which benchmark record; empty for the whole file
    rule: Mapped[str] = mapped_column(String(128))
    severity: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(SafeText)
    bound: Mapped[float | None]
    value: Mapped[float | None]
    points: Mapped[float | None]
