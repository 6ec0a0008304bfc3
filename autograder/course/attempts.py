"""Which graded attempt counts, in one place: nbgrader's gradebook (the watch's sync), the student's feedback page,
`sparkgrade export` and the course overview all ask here.

A lab's attempt policy (sparkgrade.yaml ``policies:``, autograder/course/config.py) says ``counts: last`` (the
default: the attempt graded last, the store's current result) or ``counts: best`` (the highest score, the earliest
of equal scores). Attempts are the distinct submitted contents in the order they were first graded; a regrade of
the same content (a new rubric version, a forced regrade) is the same attempt with its newest grade.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from autograder.course.config import AttemptPolicy, CourseConfig
from autograder.db.store import CourseStore
from autograder.records import GradeRecord


@dataclass(frozen=True)
class Counted:
    """A student's graded attempts of one lab and the one that counts."""

    record: GradeRecord  # the attempt that counts
    number: int  # its place among the graded attempts, from 1
    attempts: int  # graded attempts so far
    rule: str  # the policy's ``counts``: "last" or "best"
    limit: int | None = None  # the policy's cap on graded attempts; None: no cap
    contents: tuple[str, ...] = ()  # the content hash of each graded attempt, in order

    @property
    def note(self) -> str:
        """"attempt 2 of 3 counts (best)", for the pages and the watch's log."""
        return f"attempt {self.number} of {self.attempts} counts ({self.rule})"

    def number_of(self, record: GradeRecord) -> int | None:
        """Which graded attempt ``record`` is, from 1; None for content never graded."""
        return self.contents.index(record.content_hash) + 1 if record.content_hash in self.contents else None


def graded_attempts(history: Sequence[GradeRecord]) -> list[GradeRecord]:
    """One record per submitted content, in the order first graded, each with its newest grade."""
    by_content: dict[str, GradeRecord] = {}
    for r in history:  # oldest first: a later grade of the same content replaces it in its first place
        by_content[r.content_hash] = r
    return list(by_content.values())


def counted(history: Sequence[GradeRecord], policy: AttemptPolicy, current: GradeRecord | None = None) -> GradeRecord:
    """The graded attempt that counts: the last (``current``, the store's current result, when given), or the
    best (the earliest of equal scores)."""
    attempts = graded_attempts(history)
    if policy.counts == "best":
        return max(attempts, key=lambda r: r.score)  # max keeps the first of equals
    return current if current is not None else attempts[-1]


def counted_attempt(store: CourseStore, lab: str, student: str, policy: AttemptPolicy) -> Counted | None:
    """The student's attempt that counts under ``policy``, with its number; None when nothing is graded."""
    history = store.history(lab, student)
    if not history:
        return None
    current = next((a.record for a in history if a.current), None)
    records = [a.record for a in history]
    chosen = counted(records, policy, current)
    attempts = graded_attempts(records)
    number = next(i for i, r in enumerate(attempts, 1) if r.content_hash == chosen.content_hash)
    return Counted(chosen, number, len(attempts), policy.counts, policy.attempts,
                   tuple(r.content_hash for r in attempts))


def counted_attempts(store: CourseStore, config: CourseConfig,
                     lab: str | None = None) -> dict[tuple[str, str], Counted]:
    """{(lab, student): Counted} for every student with a graded attempt (of ``lab``), under the course's policies
    (a lab without one: the last attempt counts)."""
    out: dict[tuple[str, str], Counted] = {}
    for r in store.records(lab):
        found = counted_attempt(store, r.assignment, r.student, config.policies.get(r.assignment, AttemptPolicy()))
        if found is not None:
            out[(r.assignment, r.student)] = found
    return out


def counted_records(store: CourseStore, config: CourseConfig, lab: str | None = None) -> list[GradeRecord]:
    """store.records (by lab, then student), each replaced by the attempt that counts: what the export, the
    overview and nbgrader's gradebook show. Labs that count the last attempt cost no extra query."""
    out = []
    for r in store.records(lab):
        policy = config.policies.get(r.assignment, AttemptPolicy())
        if policy.counts == "last":
            out.append(r)
            continue
        found = counted_attempt(store, r.assignment, r.student, policy)
        out.append(found.record if found is not None else r)
    return out
