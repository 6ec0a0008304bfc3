"""Small typed records at the engine's boundaries: what a check found, and what a graded submission is."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from autograder.plausibility.schema import Verdict

CheckStatus = Literal["passed", "failed", "error"]
SubmissionStatus = Literal["graded", "error", "timeout", "invalid"]


@dataclass(frozen=True)
class Flag:
    """Something an instructor should look at: tampering, a sandbox breach, an unsandboxed run, fabrication."""

    kind: str  # e.g. "tampered", "unsandboxed", "memory", "processes", "output", "suspicious-benchmark"
    message: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class CheckResult:
    """One hidden check. ``message`` says what went wrong; ``diagnosis`` says why, when a known misconception
    (or the largest error and where it is) explains it."""

    id: str
    function: str
    points: float
    max_points: float
    status: CheckStatus
    message: str = ""
    diagnosis: str = ""
    details: dict[str, Any] = field(default_factory=dict)  # plot data for feedback (bounded, numbers only)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "function": self.function, "points": self.points, "max_points": self.max_points,
                "status": self.status, "message": self.message, "diagnosis": self.diagnosis}


@dataclass(frozen=True)
class GradeRecord:
    """A graded submission: the export contract (docs/contracts.md) plus what a regrade needs to reproduce it."""

    student: str
    assignment: str
    status: SubmissionStatus
    score: float
    max_score: float
    checks: tuple[CheckResult, ...]
    flags: tuple[Flag, ...]
    content_hash: str
    seed: str
    rubric_version: str
    sandboxed: bool
    timings: dict[str, float] = field(default_factory=dict)  # sandbox start, notebook run, checks, total
    reason: str = ""  # why the status is not "graded", in one line
    machine: str = ""
    # The plausibility verdicts of the submitted benchmarks.json, judged once during grading; None: not judged
    # (no file), which leaves verdicts already stored for this content as they are
    verdicts: tuple[Verdict, ...] | None = None

    def to_export(self) -> dict[str, Any]:
        return {
            "student": self.student,
            "assignment": self.assignment,
            "score": self.score,
            "max_score": self.max_score,
            "status": self.status,
            "checks": [c.to_dict() for c in self.checks],
            "flags": [f.to_dict() for f in self.flags],
        }

    def to_dict(self) -> dict[str, Any]:
        d = self.to_export()
        d.update(content_hash=self.content_hash, seed=self.seed, rubric_version=self.rubric_version,
                 sandboxed=self.sandboxed, timings=self.timings, reason=self.reason, machine=self.machine,
                 checks=[{**c.to_dict(), "details": c.details} for c in self.checks],
                 verdicts=None if self.verdicts is None else [v.to_dict() for v in self.verdicts])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GradeRecord:
        return cls(
            student=d["student"], assignment=d["assignment"], status=d["status"], score=d["score"],
            max_score=d["max_score"],
            checks=tuple(CheckResult(**{k: v for k, v in c.items()}) for c in d["checks"]),
            flags=tuple(Flag(**f) for f in d["flags"]), content_hash=d["content_hash"], seed=d["seed"],
            rubric_version=d["rubric_version"], sandboxed=d["sandboxed"], timings=d.get("timings", {}),
            reason=d.get("reason", ""), machine=d.get("machine", ""),
            verdicts=None if d.get("verdicts") is None else tuple(Verdict.from_dict(v) for v in d["verdicts"]),
        )
