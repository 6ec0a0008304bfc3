"""The records of benchmarks.json (validated with pydantic) and the Verdict a rule returns."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from autograder.errors import UserError
from reference.memory import normalize_dtype

Severity = Literal["impossible", "suspicious"]
Architecture = Literal["transformer", "mamba", "moe", "hybrid"]


PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class Repeats(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    decode_tok_s: tuple[PositiveFloat, ...] | None = None
    ttft_s: tuple[PositiveFloat, ...] | None = None


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1, max_length=200)
    architecture: Architecture
    params_total: int = Field(gt=0)
    params_active: int = Field(gt=0)
    dtype: str
    batch_size: int = Field(gt=0, le=1_000_000)
    context_len: int = Field(gt=0, le=100_000_000)
    device: str = Field(max_length=200)
    perplexity: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    perplexity_dataset: str | None = Field(default=None, max_length=200)
    config: dict[str, Any] | None = None
    notes: tuple[str, ...] = ()
    weights: Literal["pretrained", "random", "finetuned"] = "pretrained"
    lab: str | None = Field(default=None, max_length=200)
    # Informational measurements the labs record beside the judged ones (not checked against physics).
    kv_or_state_bytes: int | None = Field(default=None, ge=0)
    bits_per_byte: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    finetune: dict[str, Any] | None = None

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, v: str) -> str:
        return normalize_dtype(v)

    @field_validator("notes", mode="before")
    @classmethod
    def _notes(cls, v: Any) -> Any:
        if v is None:
            return ()
        return (v,) if isinstance(v, str) else v

    def declares(self, *words: str) -> bool:
        text = " ".join(self.notes).lower()
        return any(w in text for w in words)


class InferenceRecord(_Record):
    kind: Literal["inference"] = "inference"
    new_tokens: int = Field(gt=0)
    ttft_s: PositiveFloat
    decode_tok_s: float | None = Field(gt=0, allow_inf_nan=False)
    peak_mem_bytes: int = Field(gt=0)
    repeats: Repeats | None = None
    # Speculative decoding: tokens the draft proposes per verification step (bounds the speed-up it may claim).
    draft_tokens: int | None = Field(default=None, gt=0, le=64)

    @field_validator("decode_tok_s", mode="before")
    @classmethod
    def _nan_is_unmeasured(cls, v: Any) -> Any:
        # labkit writes NaN when new_tokens == 1 (no decode interval to time)
        return None if isinstance(v, float) and math.isnan(v) else v

    @field_validator("repeats", mode="before")
    @classmethod
    def _plain_list(cls, v: Any) -> Any:
        return {"decode_tok_s": v} if isinstance(v, list) else v


class TrainRecord(_Record):
    kind: Literal["train"]
    params_trainable: int = Field(gt=0)
    train_peak_mem_bytes: int = Field(gt=0)
    losses: tuple[float, ...] = Field(min_length=1)
    method: Literal["lora", "qlora", "full"] | None = None
    lora_rank: int | None = Field(default=None, gt=0)
    steps: int | None = Field(default=None, gt=0)
    train_tok_s: PositiveFloat | None = None


BenchmarkRecord = InferenceRecord | TrainRecord


def _kind(v: Any) -> str:
    kind = v.get("kind", "inference") if isinstance(v, dict) else getattr(v, "kind", "inference")
    return kind if kind in {"inference", "train"} else "unknown"


_RecordUnion = Annotated[
    Annotated[InferenceRecord, Tag("inference")] | Annotated[TrainRecord, Tag("train")],
    Discriminator(
        _kind,
        custom_error_type="invalid_kind",
        custom_error_message="kind must be 'inference' or 'train'",
    ),
]
_RECORDS = TypeAdapter(list[_RecordUnion])


def _one_line(exc: ValidationError) -> str:
    errors = exc.errors()
    err = errors[0]
    loc = [p for p in err["loc"] if p not in ("inference", "train")]
    where = f"record {loc[0]}" if loc and isinstance(loc[0], int) else "benchmarks"
    path = ".".join(str(p) for p in loc[1:])
    got = err.get("input")
    got_text = "" if isinstance(got, dict) or err["type"] == "missing" else f" (got {json.dumps(got)[:60]})"
    msg = err["msg"].removeprefix("Value error, ")
    text = f"{where}, field '{path}': {msg}{got_text}" if path else f"{where}: {msg}"
    more = len(errors) - 1
    return text + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")


def parse_records(data: Any) -> list[BenchmarkRecord]:
    """Validate decoded JSON; a ValueError with one line naming the record index and field otherwise."""
    if not isinstance(data, list):
        raise ValueError(f"benchmarks.json must be a JSON list of records, not a JSON {type(data).__name__}")
    try:
        return _RECORDS.validate_python(data)
    except ValidationError as exc:
        raise ValueError(_one_line(exc)) from None


def load_records(path: str | Path) -> list[BenchmarkRecord]:
    """Read and validate a benchmarks.json; UserError (one line) if it is missing, not JSON or off-schema."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{p}: cannot read it ({exc.__class__.__name__})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{p}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    try:
        return parse_records(data)
    except ValueError as exc:
        raise UserError(f"{p}: {exc}") from None


# ---------------------------------------------------------------------------------------------------------------
# Verdicts


@dataclass(frozen=True)
class Verdict:
    """One finding: which record (None: the whole file), which rule, how bad, and the numbers behind it."""

    record: int | None
    rule: str
    severity: Severity
    message: str
    bound: float | None = None
    value: float | None = None
    points: float | None = None  # filled by score_verdicts

    def as_json(self) -> dict[str, Any]:
        return {"record": self.record, "rule": self.rule, "severity": self.severity, "message": self.message,
                "bound": self.bound, "value": self.value}

    def to_dict(self) -> dict[str, Any]:
        return {**self.as_json(), "points": self.points}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Verdict:
        return cls(record=d.get("record"), rule=str(d["rule"]), severity=d["severity"], message=str(d["message"]),
                   bound=d.get("bound"), value=d.get("value"), points=d.get("points"))

