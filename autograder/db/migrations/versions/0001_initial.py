"""Initial schema: students, assignments, grading runs, submissions, check results, flags, benchmark verdicts.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assignments")),
        sa.UniqueConstraint("name", name=op.f("uq_assignments_name")),
    )
    op.create_table(
        "grading_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("machine", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("assignment", sa.String(length=255), nullable=True),
        sa.Column("force", sa.Boolean(), nullable=False),
        sa.Column("saved", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grading_runs")),
    )
    op.create_table(
        "students",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_students")),
        sa.UniqueConstraint("name", name=op.f("uq_students_name")),
    )
    op.create_table(
        "submissions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("student_id", sa.Integer(), nullable=False),
        sa.Column("assignment_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("graded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("score", sa.Double(), nullable=False),
        sa.Column("max_score", sa.Double(), nullable=False),
        sa.Column("run_time_s", sa.Double(), nullable=True),
        sa.Column("timings", sa.Text(), nullable=False),
        sa.Column("machine", sa.String(length=255), nullable=False),
        sa.Column("rubric_version", sa.String(length=255), nullable=False),
        sa.Column("seed", sa.String(length=64), nullable=False),
        sa.Column("sandboxed", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("grading_run_id", sa.Integer(), nullable=True),
        sa.CheckConstraint("status IN ('graded', 'error', 'timeout', 'invalid')", name=op.f("ck_submissions_status")),
        sa.CheckConstraint("attempt >= 1", name=op.f("ck_submissions_attempt")),
        sa.ForeignKeyConstraint(["assignment_id"], ["assignments.id"],
                                name=op.f("fk_submissions_assignment_id_assignments")),
        sa.ForeignKeyConstraint(["grading_run_id"], ["grading_runs.id"],
                                name=op.f("fk_submissions_grading_run_id_grading_runs"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["student_id"], ["students.id"], name=op.f("fk_submissions_student_id_students")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_submissions")),
        sa.UniqueConstraint("assignment_id", "student_id", "content_hash", "rubric_version",
                            name="uq_submissions_content"),
        sa.UniqueConstraint("student_id", "assignment_id", "attempt", name="uq_submissions_attempt"),
    )
    op.create_table(
        "benchmark_verdicts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("record_index", sa.Integer(), nullable=True),
        sa.Column("rule", sa.String(length=128), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("bound", sa.Double(), nullable=True),
        sa.Column("value", sa.Double(), nullable=True),
        sa.Column("points", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(["submission_id"], ["submissions.id"],
                                name=op.f("fk_benchmark_verdicts_submission_id_submissions"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_benchmark_verdicts")),
        sa.UniqueConstraint("submission_id", "position", name=op.f("uq_benchmark_verdicts_submission_id_position")),
    )
    op.create_table(
        "check_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("check_id", sa.String(length=255), nullable=False),
        sa.Column("function", sa.String(length=255), nullable=False),
        sa.Column("points", sa.Double(), nullable=False),
        sa.Column("max_points", sa.Double(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("diagnosis", sa.Text(), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.CheckConstraint("status IN ('passed', 'failed', 'error')", name=op.f("ck_check_results_status")),
        sa.ForeignKeyConstraint(["submission_id"], ["submissions.id"],
                                name=op.f("fk_check_results_submission_id_submissions"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_check_results")),
        sa.UniqueConstraint("submission_id", "position", name=op.f("uq_check_results_submission_id_position")),
    )
    op.create_table(
        "current_results",
        sa.Column("student_id", sa.Integer(), nullable=False),
        sa.Column("assignment_id", sa.Integer(), nullable=False),
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["assignment_id"], ["assignments.id"],
                                name=op.f("fk_current_results_assignment_id_assignments")),
        sa.ForeignKeyConstraint(["student_id"], ["students.id"], name=op.f("fk_current_results_student_id_students")),
        sa.ForeignKeyConstraint(["submission_id"], ["submissions.id"],
                                name=op.f("fk_current_results_submission_id_submissions"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("student_id", "assignment_id", name=op.f("pk_current_results")),
        sa.UniqueConstraint("submission_id", name=op.f("uq_current_results_submission_id")),
    )
    op.create_table(
        "flags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["submission_id"], ["submissions.id"],
                                name=op.f("fk_flags_submission_id_submissions"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flags")),
        sa.UniqueConstraint("submission_id", "position", name=op.f("uq_flags_submission_id_position")),
    )


def downgrade() -> None:
    for table in ("flags", "current_results", "check_results", "benchmark_verdicts", "submissions", "students",
                  "grading_runs", "assignments"):
        op.drop_table(table)
