"""Entry points of the pure core (all verdicts of a file, spot checks) and scoring verdicts into points."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from autograder.plausibility.consistency import _check_consistency, _check_fabrication
from autograder.plausibility.rules import (
    _check_decode,
    _check_memory,
    _check_params,
    _check_perplexity,
    _check_repeats,
    _check_round_bytes,
    _check_train,
    _check_ttft,
    _check_ttft_vs_decode,
)
from autograder.plausibility.schema import BenchmarkRecord, InferenceRecord, TrainRecord, Verdict, parse_records
from autograder.plausibility.shapes import resolve_shape, workload
from autograder.plausibility.text import _label, _num
from reference.hardware import HardwareProfile, get_profile


def check_benchmarks(records: Sequence[BenchmarkRecord] | Sequence[Mapping[str, Any]],
                     profile: HardwareProfile | str) -> list[Verdict]:
    """All verdicts for one student's records on one device (points unset: see score_verdicts)."""
    hw = get_profile(profile) if isinstance(profile, str) else profile
    recs: list[BenchmarkRecord] = (
        parse_records(list(records))
        if any(not isinstance(r, InferenceRecord | TrainRecord) for r in records)
        else list(records)  # type: ignore[arg-type]
    )
    shapes = [resolve_shape(r) for r in recs]
    out: list[Verdict] = []
    for i, (r, shape) in enumerate(zip(recs, shapes, strict=True)):
        w = workload(r, shape)
        out += _check_params(i, r, shape)
        out += _check_memory(i, r, w, hw)
        out += _check_perplexity(i, r, shape)
        out += _check_round_bytes(i, r)
        if isinstance(r, InferenceRecord):
            out += _check_decode(i, r, shape, w, hw)
            out += _check_ttft(i, r, shape, w, hw)
            out += _check_ttft_vs_decode(i, r)
            out += _check_repeats(i, r)
        else:
            out += _check_train(i, r, shape, w, hw)
    out += _check_consistency(recs, shapes, hw)
    out += _check_fabrication(recs, hw)
    return sorted(out, key=lambda v: (v.record if v.record is not None else -1, v.severity != "impossible"))


@dataclass(frozen=True)
class Judgement:
    """One submission's benchmarks.json judged once: its records and verdicts, or why it could not be judged."""

    hardware: str
    records: tuple[BenchmarkRecord, ...] = ()
    verdicts: tuple[Verdict, ...] = ()
    problem: str | None = None  # one line: missing, not JSON, off-schema

    @property
    def impossible(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.verdicts if v.severity == "impossible")

    @property
    def suspicious(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.verdicts if v.severity == "suspicious")


def judge_file(raw: bytes | None, hardware: str,
               transform: Callable[[list[Any]], list[Any]] | None = None) -> Judgement:
    """Judge the untrusted bytes of a benchmarks.json on ``hardware``; never raises for what the bytes hold.

    ``transform`` maps the decoded list before validation (a lab whose notebook records a fine-tune inside an
    inference record reads it as the train record it describes); it may raise ValueError with a one-line reason.
    """
    if raw is None:
        return Judgement(hardware, problem="no benchmarks.json was submitted beside the notebook")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        return Judgement(hardware, problem=f"benchmarks.json is not valid JSON ({str(exc)[:200]})")
    try:
        if transform is not None:
            if not isinstance(data, list):
                raise ValueError(f"must be a JSON list of records, not a JSON {type(data).__name__}")
            data = transform(data)
        records = parse_records(data)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:  # a transform meets hostile shapes too
        return Judgement(hardware, problem=f"benchmarks.json: {str(exc)[:300]}")
    return Judgement(hardware, tuple(records), tuple(check_benchmarks(records, hardware)))


SPOT_FIELDS = ("decode_tok_s", "ttft_s", "peak_mem_bytes", "perplexity")


def spot_check(record: InferenceRecord | Mapping[str, Any], remeasured: InferenceRecord | Mapping[str, Any],
               rel_tol: float | Mapping[str, float], index: int | None = None) -> list[Verdict]:
    """Compare a record with the grader's re-measurement of the same configuration.

    ``remeasured`` may be a full record or just {field: value}; ``rel_tol`` one tolerance or one per field
    (fields without one are skipped). A claim off by more than the tolerance (relative to the re-measurement) is
    suspicious: the grading machine's state differs from the student's, so this is never called impossible.
    """
    rec = record if isinstance(record, InferenceRecord) else InferenceRecord.model_validate(dict(record))
    again = remeasured.model_dump() if isinstance(remeasured, BaseModel) else dict(remeasured)
    out: list[Verdict] = []
    for name in SPOT_FIELDS:
        tol = rel_tol.get(name) if isinstance(rel_tol, Mapping) else rel_tol
        claimed, measured = getattr(rec, name), again.get(name)
        if tol is None or claimed is None or measured is None or not measured > 0:
            continue
        off = abs(claimed - measured) / measured
        if off > tol:
            out.append(Verdict(index, "spot_check", "suspicious",
                f"{_label(index, rec) if index is not None else 'The record'}: "
                f"{name} {_num(claimed)} was re-measured on the grading machine as {_num(measured)}, "
                f"{'higher' if claimed > measured else 'lower'} by {off:.0%} (tolerance {tol:.0%}).",
                float(measured), float(claimed)))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Scoring


@dataclass(frozen=True)
class RubricPoints:
    """Points a verdict costs: by rule when the rubric names it, else by severity; the total may be capped."""

    impossible: float = 2.0
    suspicious: float = 0.0  # by default flagged for a person to review, not deducted
    per_rule: Mapping[str, float] = field(default_factory=dict)
    max_total: float | None = None

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> RubricPoints:
        """{"impossible": 2, "suspicious": 0.5, "max_total": 6, "rules": {"decode_bound": 3}}"""
        return cls(
            impossible=float(m.get("impossible", cls.impossible)),
            suspicious=float(m.get("suspicious", cls.suspicious)),
            per_rule={str(k): float(v) for k, v in (m.get("rules") or {}).items()},
            max_total=None if m.get("max_total") is None else float(m["max_total"]),
        )

    def points_for(self, v: Verdict) -> float:
        return self.per_rule.get(v.rule, self.impossible if v.severity == "impossible" else self.suspicious)


DEFAULT_RUBRIC = RubricPoints()


@dataclass(frozen=True)
class PlausibilityScore:
    points_lost: float
    verdicts: tuple[Verdict, ...]


def _points_text(p: float) -> str:
    if p == 0:
        return " No points deducted: flagged for your instructor to review."
    return f" This costs {p:g} point{'s' * (p != 1)}."


def score_verdicts(verdicts: Iterable[Verdict],
                   rubric_points: RubricPoints | Mapping[str, Any] = DEFAULT_RUBRIC) -> PlausibilityScore:
    """Points lost for these verdicts under the rubric; each verdict gets its points and says them."""
    rubric = rubric_points if isinstance(rubric_points, RubricPoints) else RubricPoints.from_mapping(rubric_points)
    scored = []
    total = 0.0
    for v in verdicts:
        p = rubric.points_for(v)
        if rubric.max_total is not None:
            p = max(0.0, min(p, rubric.max_total - total))
        total += p
        scored.append(dataclasses.replace(v, points=p, message=v.message + _points_text(p)))
    return PlausibilityScore(points_lost=total, verdicts=tuple(scored))

