"""Benchmark plausibility: judge a student's benchmarks.json against physics without rerunning it.

Pure core (functions of data) and one thin CLI shell (``cmd_check_benchmarks``). The hardware limits and the model
maths are the trusted ``reference`` package's (hardware profiles, KV cache / SSM state, parameter counts, catalogue).

Schema of benchmarks.json: a JSON list of records, each an object.

    Inference record (labs 2.4.1, 2.4.5; ``kind`` "inference", the default when absent)
        model            str     a catalogue name or HF id (mamba-2.8b, EleutherAI/pythia-1b, ...) or any name
        architecture     "transformer" | "mamba" | "moe" | "hybrid"
        params_total     int > 0 all parameters (every expert)
        params_active    int > 0 parameters one token uses (= params_total for a dense model)
        dtype            str     weight dtype: bf16/bfloat16, fp16/float16, fp32/float32, fp8, int8, int4, nf4, fp4
        batch_size       int > 0
        context_len      int > 0 prompt tokens per sequence
        new_tokens       int > 0 generated tokens per sequence
        ttft_s           float > 0  seconds from the call to the first new token (prefill + one step)
        decode_tok_s     float > 0  new tokens per second after the first, all sequences of the batch together;
                                    null/NaN when not measured (new_tokens = 1)
        peak_mem_bytes   int > 0 peak memory of the run: torch.cuda.max_memory_allocated (CPU: peak RSS)
        device           str     what the run reported (free text); the limits come from --hardware
      optional
        perplexity       float > 0   where measured;  perplexity_dataset: str
        config           object  the model's HF config (transformers field names; a to_diff_dict() is enough)
        repeats          [float, ...] per-repeat decode_tok_s, or {"decode_tok_s": [...], "ttft_s": [...]}
        notes            str | [str]  declared techniques: "speculative decoding" and "prompt caching" legitimately
                                      beat the naive bounds; "offload" (weights not all on the device)
        weights          "pretrained" (default) | "random" | "finetuned"
        lab              str

    Training record (lab 2.4.6; ``kind`` "train")
        model, architecture, params_total, params_active, dtype, batch_size, context_len (tokens per example),
        device as above, and
        params_trainable     int > 0   e.g. the LoRA adapters' parameters
        train_peak_mem_bytes int > 0   peak memory of training
        losses               [float, ...]  training loss (nats/token) in logging order; NaN allowed (divergence)
      optional: method ("lora" | "qlora" | "full"), lora_rank, steps, train_tok_s, perplexity, config, notes,
        weights, lab

    Unknown fields are rejected: a typo such as "perplexty" would otherwise drop a measurement silently.

The model's shape comes from the catalogue (reference.catalogue) when the model is known there, which then wins
over the record, and otherwise from the record's ``config``. Without either, only the record's own counts are used
and the bounds get an extra slack (UNKNOWN_SHAPE_SLACK).

Verdicts: "impossible" breaks physics (beyond a stated margin); "suspicious" is possible but unlikely and left for a
person to look at. Every margin is a named constant below with the reason for its size.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
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
from reference.catalogue import ModelEntry, lookup
from reference.hardware import HardwareProfile, get_profile
from reference.memory import (
    ParamCounts,
    dtype_bytes,
    estimate_params,
    hidden_size,
    kv_cache_bytes,
    kv_cache_bytes_per_token,
    mamba_dims,
    mamba_state_bytes,
    normalize_dtype,
    num_layers,
    prefill_flops,
)
from reference.memory import (
    field as config_field,
)

# ---------------------------------------------------------------------------------------------------------------
# Margins. "Impossible" must never catch an honest number: each margin covers the error of our own estimate.

# tok/s may exceed bandwidth / bytes-per-token by this factor before it is impossible: parameter counts are
# +-5 %, spec-sheet bandwidth is rounded, and a small model's hottest weights may sit in L2 cache.
DECODE_MARGIN = 1.15
# TTFT may undercut max(prefill FLOPs / peak, weight bytes / bandwidth) by this factor: FLOP counts of norms,
# rotary and softmax are left out, and the clock's resolution matters for millisecond prefills.
TTFT_MARGIN = 1.15
# A peak FLOP/s that is our estimate (DGX Spark BF16, not published) is doubled before calling anything impossible.
ESTIMATED_PEAK_SLACK = 2.0
# Without a model shape (no catalogue entry, no config) the input-embedding share of the weights is unknown
# (up to ~15 % for small models): bounds are loosened by this factor.
UNKNOWN_SHAPE_SLACK = 1.25
# Peak memory must reach this share of weights + cache: tied embeddings, buffers and count errors.
MEMORY_FLOOR_MARGIN = 0.90
# and may exceed the device's memory by this factor (GB vs GiB rounding of the spec sheet).
MEMORY_CEILING_MARGIN = 1.02

# "Suspicious" thresholds: possible, but beyond what measurements reach.
# Measured single-stream decode reaches 60-90 % of peak bandwidth (FACTS.md, DGX Spark).
SUSPICIOUS_BANDWIDTH_FRACTION = 0.95
# Prefill rarely sustains more than ~70 % of the tensor peak (FACTS.md: tens of TFLOP/s on the Spark).
SUSPICIOUS_FLOPS_FRACTION = 0.80
# TTFT longer than feeding the prompt one token at a time at the measured decode speed, times this, is a unit slip.
TTFT_VS_DECODE_FACTOR = 3.0
# Claimed parameter counts may differ from the catalogue/config count by this share (embeddings counted or not).
PARAMS_TOLERANCE = 0.15
# A dense model's active parameters should equal its total; below this share is suspicious.
DENSE_ACTIVE_MIN = 0.90
# Between a short and a long context, a transformer's peak memory must grow by at least this share of the extra
# KV cache (a static cache or a load-time peak that hides the growth is worth a look).
KV_GROWTH_MIN = 0.5
# A transformer that decodes this much faster at a longer context is suspicious (timing noise stays under it).
DECODE_SPEEDUP_NOISE = 1.15
# Mamba's decode step is the same work at any context: slowing below this share of its short-context speed is odd.
MAMBA_DECODE_MIN_RATIO = 0.7
# TTFT at a prompt at least twice as long may fall below the shorter prompt's TTFT by at most this share.
TTFT_SHRINK_NOISE = 0.8
# Perplexity: better than this share of the published (Pile) value, or worse than this multiple, is suspicious.
PPL_BELOW_PUBLISHED = 0.5
PPL_ABOVE_PUBLISHED = 10.0
# A model with random weights predicts no better than about uniform: below this share of the vocabulary is odd.
RANDOM_PPL_MIN_SHARE = 0.5
# A trained model worse than uniform guessing (perplexity > vocabulary) has a broken evaluation; random: 4x.
TRAINED_PPL_MAX_SHARE = 1.0
RANDOM_PPL_MAX_SHARE = 4.0
# Values with at least this many significant digits that repeat exactly are not coincidence.
EXACT_DIGITS = 4
# A file where this share of the measured floats have at most two significant digits reads as invented.
ROUND_SHARE = 0.6
ROUND_MIN_VALUES = 4
# Bytes that are a multiple of 10 MB or 64 MiB (chance ~1e-4 for a real allocator or RSS peak).
ROUND_BYTES = (10**7, 2**26)
# LoRA/QLoRA training more than this share of the weights is not LoRA (tiny models with high ranks reach ~30 %).
LORA_MAX_TRAINABLE_SHARE = 0.5
# First training loss above 1.5 ln(V) + 1 nats: worse than a random model; a pretrained one starts far below ln(V).
LOSS_START_FACTOR = 1.5
# Training FLOPs per token and active parameter: forward 2 + backward >= 2 (LoRA: no weight gradients), full 6.
TRAIN_FLOPS_PER_PARAM = {"lora": 4.0, "qlora": 4.0, "full": 6.0}

Severity = Literal["impossible", "suspicious"]
Architecture = Literal["transformer", "mamba", "moe", "hybrid"]

# ---------------------------------------------------------------------------------------------------------------
# Schema


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
        return {"record": self.record, "rule": self.rule, "severity": self.severity, "message": self.message}


# ---------------------------------------------------------------------------------------------------------------
# Model shape of a record


MAX_CONFIG_LAYERS = 4096  # beyond any real model; also keeps a hostile config from looping for ever


@dataclass(frozen=True)
class Shape:
    """What we know of a record's model: a config (or None) and parameter counts to judge with."""

    config: Mapping[str, Any] | None
    params: ParamCounts
    source: Literal["catalogue", "config", "record"]
    entry: ModelEntry | None = None
    reference_total: int | None = None  # the catalogue's or config's count, to compare the claim with
    reference_active: int | None = None

    @property
    def known(self) -> bool:
        return self.source != "record"


def _full_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """A to_diff_dict() completed with the defaults of its transformers config class (raw dict if that fails)."""
    mtype = config.get("model_type")
    if not isinstance(mtype, str):
        return config
    try:
        from transformers import AutoConfig

        kwargs = {k: v for k, v in config.items() if k != "model_type"}
        return AutoConfig.for_model(mtype, **kwargs).to_dict()
    except Exception:  # unknown model type or values transformers rejects: judge with what is there
        return config


def resolve_shape(record: BenchmarkRecord) -> Shape:
    entry = lookup(record.model)
    if entry is not None:
        est = entry.estimated
        params = ParamCounts(entry.total, entry.active, est.embedding, est.lm_head, est.tied)
        return Shape(entry.config, params, "catalogue", entry, entry.total, entry.active)
    if record.config:
        cfg = _full_config(record.config)
        try:
            if not 0 < num_layers(cfg) <= MAX_CONFIG_LAYERS:
                raise ValueError("layers")
            est = estimate_params(cfg)
        except (KeyError, ValueError, TypeError, ZeroDivisionError, OverflowError):
            est = None
        if est is not None and est.total > 0:
            # The config is the student's too: judge with the smaller count, so an error can only loosen a bound.
            total = min(record.params_total, est.total)
            active = min(record.params_active, est.active)
            embedding = min(est.embedding, active // 4)  # never let the embedding eat the whole active count
            lm_head = min(est.lm_head, active // 4)
            params = ParamCounts(total, active, embedding, lm_head, est.tied)
            return Shape(cfg, params, "config", None, est.total, est.active)
    params = ParamCounts(record.params_total, record.params_active, 0, 0, True)
    return Shape(None, params, "record")


# ---------------------------------------------------------------------------------------------------------------
# Wording helpers


def _bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


def _num(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1e5 else f"{x:,.0f}"


def _secs(t: float) -> str:
    return f"{t * 1e3:.3g} ms" if t < 1 else f"{t:.3g} s"


def _label(i: int, r: BenchmarkRecord) -> str:
    extra = "" if r.kind == "inference" else ", training"
    return f"Record {i} ({r.model}, {r.dtype}, batch {r.batch_size}, context {r.context_len}{extra})"


def _sig_digits(x: float) -> int:
    """Significant digits of x as written (13.10 -> 3, 0.25 -> 2, 16000000000 -> 2)."""
    if x == 0 or not math.isfinite(x):
        return 0
    text = f"{abs(x):.15g}"
    if "e" in text:
        text = text.split("e")[0]
    digits = text.replace(".", "").lstrip("0")
    if "." not in text:
        digits = digits.rstrip("0")
    return len(digits)


def _is_round_float(x: float) -> bool:
    return _sig_digits(x) <= 2


def _is_round_bytes(n: int) -> bool:
    return any(n % unit == 0 for unit in ROUND_BYTES)


def _unit_hint(value: float, lo: float, hi: float) -> str:
    """' It looks like MiB, not bytes.' when a unit slip would put the value inside [lo, hi]."""
    for name, factor in (("MiB", 2**20), ("MB", 1e6), ("GiB", 2**30), ("GB", 1e9), ("kB", 1e3)):
        if lo <= value * factor <= hi:
            return f" It looks like {name}, not bytes: record bytes."
    return ""


# ---------------------------------------------------------------------------------------------------------------
# Per-record physics


@dataclass(frozen=True)
class Workload:
    """The traffic and arithmetic of one inference record (used by the bounds and by the roofline figure)."""

    weight_bytes: float  # bytes of weights resident on the device
    read_bytes_per_step: float  # weights + cache one decode step must read (all sequences)
    decode_flops_per_token: float
    prefill_flops: float
    prefill_read_bytes: float
    cache_bytes_end: float  # KV cache / SSM state at the end of the run
    cache_label: str


def workload(record: InferenceRecord | TrainRecord, shape: Shape) -> Workload:
    wb = dtype_bytes(record.dtype)
    kv_b = wb if wb >= 2 else 1  # quantised weights usually keep a bf16 cache; 1 byte keeps the floor safe
    cfg, p, b = shape.config, shape.params, record.batch_size
    new = getattr(record, "new_tokens", 0)
    if cfg is not None:
        kv_now = kv_cache_bytes(cfg, record.context_len, b, kv_b)
        kv_end = kv_cache_bytes(cfg, record.context_len + new, b, kv_b)
        state = mamba_state_bytes(cfg, b, wb)
        flops = prefill_flops(cfg, p, record.context_len, b)
    else:
        kv_now = kv_end = state = 0
        flops = 2.0 * p.matmul_active * record.context_len * b
    parts = []
    if kv_end:
        parts.append("KV cache")
    if state:
        parts.append("SSM state")
    label = " and ".join(parts) if parts else ("cache (not counted: model shape unknown)" if cfg is None else "cache")
    read_weights = p.read_per_token * wb
    return Workload(
        weight_bytes=p.total * wb,
        read_bytes_per_step=read_weights + kv_now + state,
        decode_flops_per_token=2.0 * p.matmul_active,
        prefill_flops=flops,
        prefill_read_bytes=read_weights,
        cache_bytes_end=kv_end + state,
        cache_label=label,
    )


def _peak(profile: HardwareProfile, wb: float, *, ceiling: bool) -> float:
    """Peak FLOP/s; for 'impossible' judgements an estimated peak gets ESTIMATED_PEAK_SLACK."""
    slack = ESTIMATED_PEAK_SLACK if ceiling and profile.flops_estimated else 1.0
    return profile.peak_flops(wb) * slack


def _check_params(i: int, r: BenchmarkRecord, shape: Shape) -> list[Verdict]:
    out: list[Verdict] = []
    label = _label(i, r)
    if r.params_active > r.params_total:
        out.append(Verdict(i, "params_active_le_total", "impossible",
            f"{label}: {r.params_active:,} active parameters is more than the {r.params_total:,} the model has "
            f"({r.params_active / r.params_total:.2f}x). Active parameters are the subset one token uses, so "
            "they can be at most the total.", r.params_total, r.params_active))
    elif r.architecture in ("transformer", "mamba") and r.params_active < DENSE_ACTIVE_MIN * r.params_total:
        out.append(Verdict(i, "dense_params_active", "suspicious",
            f"{label}: a dense {r.architecture} uses every parameter for every token, but the record says "
            f"{r.params_active:,} active of {r.params_total:,} ({r.params_active / r.params_total:.0%}); "
            f"expected at least {DENSE_ACTIVE_MIN:.0%}.", r.params_total, r.params_active))
    if shape.entry is not None and shape.entry.architecture != r.architecture:
        out.append(Verdict(i, "architecture_match", "suspicious",
            f"{label}: {shape.entry.name} is a {shape.entry.architecture} model, but the record says "
            f"'{r.architecture}'.", None, None))
    if shape.reference_total:
        src = "the catalogue" if shape.source == "catalogue" else "its config"
        for what, claimed, ref in (("total", r.params_total, shape.reference_total),
                                   ("active", r.params_active, shape.reference_active)):
            if ref and abs(claimed - ref) > PARAMS_TOLERANCE * ref:
                out.append(Verdict(i, "params_match_model", "suspicious",
                    f"{label}: params_{what} {claimed:,} differs from the {ref:,} that {src} gives for this "
                    f"model by {abs(claimed - ref) / ref:.0%} (tolerance {PARAMS_TOLERANCE:.0%}). Count with "
                    "sum(p.numel() for p in model.parameters()).", ref, claimed))
    return out


def _check_decode(i: int, r: InferenceRecord, shape: Shape, w: Workload, hw: HardwareProfile) -> list[Verdict]:
    v = r.decode_tok_s
    if v is None or r.declares("speculative", "assisted", "draft model", "medusa", "lookahead"):
        return []
    wb = dtype_bytes(r.dtype)
    bw_bound = r.batch_size * hw.bandwidth_bytes_s / w.read_bytes_per_step
    compute_bound = _peak(hw, wb, ceiling=True) / max(w.decode_flops_per_token, 1.0)
    bound = min(bw_bound, compute_bound)
    if not shape.known:
        bound *= UNKNOWN_SHAPE_SLACK
    label = _label(i, r)
    if bw_bound <= compute_bound:
        why = (f"every decode step reads {_bytes(w.read_bytes_per_step)} (the active weights"
               f"{' and ' + w.cache_label if w.cache_label and 'unknown' not in w.cache_label else ''}"
               f"{', for ' + str(r.batch_size) + ' sequences' if r.batch_size > 1 else ''}), and "
               f"{hw.display_name} moves at most {_bytes(hw.bandwidth_bytes_s)}/s")
    else:
        why = (f"every token costs {_num(w.decode_flops_per_token / 1e9)} GFLOP and {hw.display_name} peaks at "
               f"{_num(_peak(hw, wb, ceiling=True) / 1e12)} TFLOP/s")
    limit = bound * DECODE_MARGIN
    if v > limit:
        return [Verdict(i, "decode_bound", "impossible",
            f"{label}: decode speed {_num(v)} tok/s is impossible: {why}, which allows at most {_num(bound)} "
            f"tok/s ({_num(limit)} with our {DECODE_MARGIN - 1:.0%} margin); yours is {v / bound:.2f}x that. "
            "Usual causes: timing without torch.cuda.synchronize(), counting prompt tokens as generated ones, "
            "or an undeclared technique (write 'speculative decoding' in notes if you used one).",
            limit, v)]
    if v > bound * SUSPICIOUS_BANDWIDTH_FRACTION:
        return [Verdict(i, "decode_bound", "suspicious",
            f"{label}: decode speed {_num(v)} tok/s is {v / bound:.0%} of the physical limit {_num(bound)} tok/s "
            f"({why}); measured decoding reaches 60-90 % of it. Check the timing.", bound, v)]
    return []


def _check_ttft(i: int, r: InferenceRecord, shape: Shape, w: Workload, hw: HardwareProfile) -> list[Verdict]:
    if r.declares("prompt cach", "prefix cach", "prompt-cach", "prefix-cach", "cached prompt"):
        return []
    wb = dtype_bytes(r.dtype)
    t_compute = w.prefill_flops / _peak(hw, wb, ceiling=True)
    t_memory = w.prefill_read_bytes / hw.bandwidth_bytes_s
    t_min = max(t_compute, t_memory)
    if not shape.known:
        t_min /= UNKNOWN_SHAPE_SLACK
    label = _label(i, r)
    floor = t_min / TTFT_MARGIN
    if t_compute >= t_memory:
        why = (f"the prompt needs at least {_num(w.prefill_flops / 1e12)} TFLOP and {hw.display_name} peaks at "
               f"{_num(_peak(hw, wb, ceiling=True) / 1e12)} TFLOP/s"
               f"{' (twice our estimate of its peak)' if hw.flops_estimated else ''}")
    else:
        why = (f"the first token needs every active weight read once ({_bytes(w.prefill_read_bytes)}) "
               f"at {_bytes(hw.bandwidth_bytes_s)}/s")
    if r.ttft_s < floor:
        return [Verdict(i, "ttft_bound", "impossible",
            f"{label}: time to first token {_secs(r.ttft_s)} is impossible: {why}, so it takes at least "
            f"{_secs(t_min)} ({_secs(floor)} with our {TTFT_MARGIN - 1:.0%} margin); yours is "
            f"{t_min / r.ttft_s:.2f}x faster than that. Usual causes: no torch.cuda.synchronize() before reading "
            "the clock, or a prompt cache left warm (write 'prompt caching' in notes if intended).",
            floor, r.ttft_s)]
    nominal = w.prefill_flops / (hw.peak_flops(wb) * SUSPICIOUS_FLOPS_FRACTION)
    if t_compute >= t_memory and r.ttft_s < nominal:
        achieved = w.prefill_flops / r.ttft_s
        return [Verdict(i, "ttft_bound", "suspicious",
            f"{label}: time to first token {_secs(r.ttft_s)} means {_num(achieved / 1e12)} TFLOP/s of prefill, "
            f"{achieved / hw.peak_flops(wb):.0%} of {hw.display_name}'s peak {_num(hw.peak_flops(wb) / 1e12)} "
            f"TFLOP/s; real prefill rarely passes {SUSPICIOUS_FLOPS_FRACTION:.0%}.", nominal, r.ttft_s)]
    return []


def _check_memory(i: int, r: BenchmarkRecord, w: Workload, hw: HardwareProfile) -> list[Verdict]:
    peak = r.peak_mem_bytes if isinstance(r, InferenceRecord) else r.train_peak_mem_bytes
    rule = "memory" if isinstance(r, InferenceRecord) else "train_memory"
    label = _label(i, r)
    need = w.weight_bytes + w.cache_bytes_end
    what = f"the weights ({_bytes(w.weight_bytes)})"
    if isinstance(r, TrainRecord):
        grads = r.params_trainable * dtype_bytes(r.dtype)
        need = w.weight_bytes + grads
        what += f" and the gradients of the trainable parameters ({_bytes(grads)})"
    elif w.cache_bytes_end:
        what += f" and the {w.cache_label} ({_bytes(w.cache_bytes_end)})"
    ceiling = hw.usable_memory_bytes
    out: list[Verdict] = []
    floor = need * MEMORY_FLOOR_MARGIN
    if peak < floor and not r.declares("offload"):
        out.append(Verdict(i, f"{rule}_floor", "impossible",
            f"{label}: peak memory {_bytes(peak)} is impossible: {what} alone take {_bytes(need)} "
            f"({_bytes(floor)} with our {1 - MEMORY_FLOOR_MARGIN:.0%} margin); yours is {peak / need:.0%} of that."
            + (_unit_hint(peak, need, ceiling) or " Measure with torch.cuda.max_memory_allocated() after the run, "
               "without subtracting the memory in use before it."), floor, peak))
    limit = ceiling * MEMORY_CEILING_MARGIN
    if peak > limit:
        out.append(Verdict(i, f"{rule}_ceiling", "impossible",
            f"{label}: peak memory {_bytes(peak)} is more than {hw.display_name} has ({_bytes(ceiling)}"
            f"{' visible to CUDA' if hw.cuda_visible_bytes else ''}): {peak / ceiling:.2f}x the device. "
            "Was this run on another machine (pass --hardware), or is the unit wrong?", limit, peak))
    return out


def _vocab(shape: Shape) -> int | None:
    if shape.config is None:
        return None
    v = config_field(shape.config, "vocab_size", default=None)
    return int(v) if isinstance(v, int | float) and v > 1 else None


def _check_perplexity(i: int, r: BenchmarkRecord, shape: Shape) -> list[Verdict]:
    ppl = r.perplexity
    if ppl is None:
        return []
    label = _label(i, r)
    if ppl < 1:
        return [Verdict(i, "perplexity_range", "impossible",
            f"{label}: perplexity {_num(ppl)} is below 1, which is impossible: perplexity is exp(mean "
            "cross-entropy) and cross-entropy is never negative. Did you report the loss, or exp(-loss)?",
            1.0, ppl)]
    vocab = _vocab(shape)
    published = shape.entry.pile_perplexity if shape.entry is not None else None
    if r.weights == "random" and vocab:
        lo, hi = RANDOM_PPL_MIN_SHARE * vocab, RANDOM_PPL_MAX_SHARE * vocab
        if not lo <= ppl <= hi:
            return [Verdict(i, "perplexity_range", "suspicious",
                f"{label}: a model with random weights sits near its vocabulary size ({vocab:,}); perplexity "
                f"{_num(ppl)} is {ppl / vocab:.2f}x that (expected {RANDOM_PPL_MIN_SHARE}-{RANDOM_PPL_MAX_SHARE}x).",
                lo if ppl < lo else hi, ppl)]
        return []
    if vocab and ppl > TRAINED_PPL_MAX_SHARE * vocab:
        return [Verdict(i, "perplexity_range", "suspicious",
            f"{label}: perplexity {_num(ppl)} is worse than guessing uniformly over the {vocab:,}-token "
            "vocabulary; a trained model does far better. Check the label shift and the mask.",
            float(vocab), ppl)]
    if published is not None and r.weights == "pretrained":
        lo, hi = published * PPL_BELOW_PUBLISHED, published * PPL_ABOVE_PUBLISHED
        if not lo <= ppl <= hi:
            return [Verdict(i, "perplexity_range", "suspicious",
                f"{label}: perplexity {_num(ppl)} is {ppl / published:.2f}x the published {_num(published)} "
                f"(Pile validation) for {shape.entry.name if shape.entry else r.model}; other corpora differ, "
                f"but not by this much (expected {PPL_BELOW_PUBLISHED}-{PPL_ABOVE_PUBLISHED:g}x).",
                lo if ppl < lo else hi, ppl)]
    return []


def _check_ttft_vs_decode(i: int, r: InferenceRecord) -> list[Verdict]:
    if r.decode_tok_s is None:
        return []
    serial = r.context_len * r.batch_size / r.decode_tok_s  # the prompt fed one token at a time
    limit = TTFT_VS_DECODE_FACTOR * serial + 1.0  # +1 s: start-up latency of a small prompt
    if r.ttft_s > limit:
        hint = " It looks like milliseconds: ttft_s is in seconds." if r.ttft_s / 1000 <= limit else ""
        return [Verdict(i, "ttft_vs_decode", "suspicious",
            f"{_label(i, r)}: time to first token {_secs(r.ttft_s)} is longer than feeding the "
            f"{r.context_len}-token prompt one token at a time at your own decode speed ({_secs(serial)}), "
            f"{r.ttft_s / serial:.1f}x; prefill processes the prompt in parallel and is faster.{hint}",
            limit, r.ttft_s)]
    return []


def _check_repeats(i: int, r: InferenceRecord) -> list[Verdict]:
    out: list[Verdict] = []
    if r.repeats is None:
        return out
    for name in ("decode_tok_s", "ttft_s"):
        values = getattr(r.repeats, name)
        reported = getattr(r, name)
        if not values:
            continue
        if len(values) >= 3 and len(set(values)) == 1 and _sig_digits(values[0]) >= EXACT_DIGITS:
            out.append(Verdict(i, "zero_variance_repeats", "suspicious",
                f"{_label(i, r)}: all {len(values)} repeats of {name} are exactly {values[0]!r}; timings to "
                f"{_sig_digits(values[0])} significant digits always vary from run to run.", 0.0, 0.0))
        if reported is not None:
            lo, hi = min(values), max(values)
            if not lo * 0.99 <= reported <= hi * 1.01:
                out.append(Verdict(i, "repeats_disagree", "suspicious",
                    f"{_label(i, r)}: the reported {name} {_num(reported)} lies outside its own repeats "
                    f"({_num(lo)} to {_num(hi)}); report their median.", hi if reported > hi else lo,
                    reported))
    return out


def _check_round_bytes(i: int, r: BenchmarkRecord) -> list[Verdict]:
    peak = r.peak_mem_bytes if isinstance(r, InferenceRecord) else r.train_peak_mem_bytes
    if _is_round_bytes(peak):
        return [Verdict(i, "round_numbers", "suspicious",
            f"{_label(i, r)}: peak memory {peak:,} bytes is a round number; a measured peak (allocator or "
            "RSS) almost never is. Record the measured value, not a conversion from GB.", None, peak)]
    return []


def _check_train(i: int, r: TrainRecord, shape: Shape, w: Workload, hw: HardwareProfile) -> list[Verdict]:
    out: list[Verdict] = []
    label = _label(i, r)
    if r.params_trainable > r.params_total:
        out.append(Verdict(i, "train_trainable_le_total", "impossible",
            f"{label}: {r.params_trainable:,} trainable parameters is more than the {r.params_total:,} the "
            f"model has ({r.params_trainable / r.params_total:.2f}x).", r.params_total,
            r.params_trainable))
    elif r.method in ("lora", "qlora") and r.params_trainable > LORA_MAX_TRAINABLE_SHARE * r.params_total:
        out.append(Verdict(i, "train_lora_fraction", "suspicious",
            f"{label}: LoRA trains small adapters, but {r.params_trainable / r.params_total:.0%} of the "
            f"parameters are trainable (more than {LORA_MAX_TRAINABLE_SHARE:.0%}). Were the base weights "
            "frozen?", LORA_MAX_TRAINABLE_SHARE * r.params_total, r.params_trainable))
    losses = r.losses
    if any(x < 0 for x in losses if math.isfinite(x)):
        worst = min(x for x in losses if math.isfinite(x))
        out.append(Verdict(i, "train_loss_range", "impossible",
            f"{label}: a training loss of {_num(worst)} is impossible: cross-entropy is never negative.",
            0.0, worst))
    if any(not math.isfinite(x) for x in losses):
        out.append(Verdict(i, "train_loss_range", "suspicious",
            f"{label}: the loss became {next(x for x in losses if not math.isfinite(x))} (training diverged); "
            "report it, but lower the learning rate.", None, None))
    vocab = _vocab(shape)
    first = losses[0]
    if vocab and math.isfinite(first):
        ceiling = LOSS_START_FACTOR * math.log(vocab) + 1.0
        if first > ceiling:
            out.append(Verdict(i, "train_loss_range", "suspicious",
                f"{label}: the first loss {_num(first)} is above {_num(ceiling)} nats, worse than a random "
                f"model (ln {vocab:,} = {math.log(vocab):.2f}). Is it summed instead of averaged over tokens?",
                ceiling, first))
    finite = [x for x in losses if math.isfinite(x)]
    run, run_value = _longest_run(finite) if finite else (0, 0.0)
    if run >= 3 and _sig_digits(run_value) >= EXACT_DIGITS:
        out.append(Verdict(i, "train_loss_zero_variance", "suspicious",
            f"{label}: {run} consecutive logged losses are exactly equal; minibatch losses always vary.",
            0.0, 0.0))
    if r.train_tok_s is not None:
        wb = dtype_bytes(r.dtype)
        per_param = TRAIN_FLOPS_PER_PARAM.get(r.method or "lora", 4.0)
        compute = _peak(hw, wb, ceiling=True) / (per_param * max(shape.params.matmul_active, 1))
        tokens_per_step = r.batch_size * r.context_len
        memory = tokens_per_step * hw.bandwidth_bytes_s / (2 * w.prefill_read_bytes)  # forward + backward read
        bound = min(compute, memory) * (1 if shape.known else UNKNOWN_SHAPE_SLACK)
        if r.train_tok_s > bound * DECODE_MARGIN:
            out.append(Verdict(i, "train_throughput_bound", "impossible",
                f"{label}: training at {_num(r.train_tok_s)} tok/s is impossible: {hw.display_name} allows at "
                f"most {_num(bound)} tok/s ({per_param:g} FLOP per parameter and token at "
                f"{_num(_peak(hw, wb, ceiling=True) / 1e12)} TFLOP/s, and the weights read twice a step); "
                f"yours is {r.train_tok_s / bound:.2f}x that.", bound * DECODE_MARGIN, r.train_tok_s))
    return out


def _longest_run(xs: Sequence[float]) -> tuple[int, float]:
    """(length, value) of the longest stretch of exactly equal consecutive values."""
    best, cur, val = 1, 1, xs[0]
    for a, b in itertools.pairwise(xs):
        cur = cur + 1 if a == b else 1
        if cur > best:
            best, val = cur, b
    return best, val


# ---------------------------------------------------------------------------------------------------------------
# Consistency across one student's records


def _group_key(r: InferenceRecord) -> tuple[Any, ...]:
    m = lookup(r.model)
    return (m.name if m else r.model.lower(), r.dtype, r.batch_size, r.device, r.weights)


def _median_by_context(items: list[tuple[int, InferenceRecord]], attr: str) -> dict[int, tuple[float, int]]:
    """context -> (median value, index of a record holding it)."""
    by: dict[int, list[tuple[float, int]]] = defaultdict(list)
    for i, r in items:
        v = getattr(r, attr)
        if v is not None:
            by[r.context_len].append((float(v), i))
    out = {}
    for ctx, vals in by.items():
        med = statistics.median(v for v, _ in vals)
        out[ctx] = (med, min(vals, key=lambda t: abs(t[0] - med))[1])
    return out


def _check_consistency(records: Sequence[BenchmarkRecord], shapes: Sequence[Shape],
                       hw: HardwareProfile) -> list[Verdict]:
    out: list[Verdict] = []
    groups: dict[tuple[Any, ...], list[tuple[int, InferenceRecord]]] = defaultdict(list)
    for i, r in enumerate(records):
        if isinstance(r, InferenceRecord):
            groups[_group_key(r)].append((i, r))
    allocator_peaks = hw.name != "cpu"  # CPU peaks are RSS high-water marks: they do not reset between runs
    for items in groups.values():
        contexts = sorted({r.context_len for _, r in items})
        if len(contexts) < 2:
            continue
        i0, r0 = items[0]
        shape = shapes[i0]
        arch = r0.architecture
        lo, hi = contexts[0], contexts[-1]
        name = f"{r0.model} ({r0.dtype}, batch {r0.batch_size})"
        # memory growth
        mem = _median_by_context(items, "peak_mem_bytes")
        kv_b = dtype_bytes(r0.dtype) if dtype_bytes(r0.dtype) >= 2 else 1
        if allocator_peaks and shape.config is not None:
            d_mem = mem[hi][0] - mem[lo][0]
            new = r0.new_tokens
            d_kv = kv_cache_bytes(shape.config, hi + new, r0.batch_size, kv_b) - kv_cache_bytes(
                shape.config, lo + new, r0.batch_size, kv_b)
            if d_kv > 0 and d_mem < KV_GROWTH_MIN * d_kv:
                out.append(Verdict(mem[hi][1], "kv_memory_growth", "suspicious",
                    f"{name}: from context {lo} to {hi} the KV cache grows by {_bytes(d_kv)}, but your peak "
                    f"memory grew by {_bytes(d_mem)} ({d_mem / d_kv:.0%} of it; expected at least "
                    f"{KV_GROWTH_MIN:.0%}). Reset the peak (torch.cuda.reset_peak_memory_stats) before each run.",
                    KV_GROWTH_MIN * d_kv, d_mem))
            if arch == "mamba" and d_kv == 0:
                allowance = _mamba_activation_bytes_per_token(shape.config, r0) * (hi - lo) * r0.batch_size
                if d_mem > allowance:
                    out.append(Verdict(mem[hi][1], "mamba_memory_flat", "suspicious",
                        f"{name}: Mamba keeps a fixed-size state, yet peak memory grew by {_bytes(d_mem)} from "
                        f"context {lo} to {hi}, more than even the unfused prefill path allocates "
                        f"({_bytes(allowance)}); {d_mem / allowance:.1f}x that. It should stay nearly flat.",
                        allowance, d_mem))
        # decode speed vs context
        dec = _median_by_context(items, "decode_tok_s")
        if lo in dec and hi in dec and not any(r.declares("speculative") for _, r in items):
            ratio = dec[hi][0] / dec[lo][0]
            has_kv = shape.config is not None and kv_cache_bytes_per_token(shape.config) > 0
            if (has_kv or arch in ("transformer", "moe")) and ratio > DECODE_SPEEDUP_NOISE:
                out.append(Verdict(dec[hi][1], "transformer_decode_slows", "suspicious",
                    f"{name}: decoding got faster with a longer context ({_num(dec[lo][0])} tok/s at {lo}, "
                    f"{_num(dec[hi][0])} at {hi}, {ratio:.2f}x); each step reads a KV cache that grows with the "
                    "context, so it should slow down.", dec[lo][0] * DECODE_SPEEDUP_NOISE, dec[hi][0]))
            if arch == "mamba" and ratio < MAMBA_DECODE_MIN_RATIO:
                out.append(Verdict(dec[hi][1], "mamba_decode_flat", "suspicious",
                    f"{name}: Mamba's decode step does the same work at any context, but it slowed from "
                    f"{_num(dec[lo][0])} tok/s at {lo} to {_num(dec[hi][0])} at {hi} ({ratio:.0%}; expected "
                    f"at least {MAMBA_DECODE_MIN_RATIO:.0%}).", dec[lo][0] * MAMBA_DECODE_MIN_RATIO,
                    dec[hi][0]))
        # TTFT vs prompt length
        if not any(r.declares("prompt cach", "prefix cach") for _, r in items):
            ttft = _median_by_context(items, "ttft_s")
            for a in contexts:
                for b in contexts:
                    if b >= 2 * a and ttft[b][0] < TTFT_SHRINK_NOISE * ttft[a][0]:
                        out.append(Verdict(ttft[b][1], "ttft_grows_with_prompt", "suspicious",
                            f"{name}: the time to first token fell from {_secs(ttft[a][0])} at a {a}-token prompt "
                            f"to {_secs(ttft[b][0])} at {b} tokens ({ttft[b][0] / ttft[a][0]:.0%}); a longer "
                            "prompt needs more prefill work. Was the first run cold (no warm-up)?",
                            TTFT_SHRINK_NOISE * ttft[a][0], ttft[b][0]))
    return out


def _mamba_activation_bytes_per_token(config: Mapping[str, Any], r: InferenceRecord) -> float:
    """The most one prompt token can add to a Mamba prefill's peak (transformers' unfused path is the worst):
    a few (d_inner, d_state) fp32 tensors per token in the scan, ~16 d_inner-wide and 8 hidden-wide activations,
    and fp32 logits."""
    d_inner, d_state, _ = mamba_dims(config)
    wb = dtype_bytes(r.dtype)
    vocab = int(config_field(config, "vocab_size", default=0) or 0)
    return d_inner * d_state * 4 * 6 + d_inner * wb * 16 + hidden_size(config) * wb * 8 + vocab * 4


# ---------------------------------------------------------------------------------------------------------------
# Fabrication signals


def _check_fabrication(records: Sequence[BenchmarkRecord], hw: HardwareProfile) -> list[Verdict]:
    out: list[Verdict] = []
    inf = [(i, r) for i, r in enumerate(records) if isinstance(r, InferenceRecord)]
    fields: list[tuple[str, str]] = [("decode_tok_s", "tok/s"), ("ttft_s", "s"), ("perplexity", "")]
    if hw.name != "cpu":  # CPU RSS high-water marks legitimately repeat
        fields.append(("peak_mem_bytes", "bytes"))
    seen: set[tuple[int, int, str]] = set()
    for name, unit in fields:
        by_value: dict[float, list[tuple[int, InferenceRecord]]] = defaultdict(list)
        for i, r in inf:
            v = getattr(r, name)
            if v is not None and _sig_digits(float(v)) >= EXACT_DIGITS:
                by_value[float(v)].append((i, r))
        for value, holders in by_value.items():
            for (i, a), (j, b) in itertools.pairwise(holders):
                if (i, j, name) in seen:
                    continue
                seen.add((i, j, name))
                same_model = _group_key(a)[0] == _group_key(b)[0]
                if same_model:
                    config_a = (a.context_len, a.batch_size, a.dtype, a.new_tokens)
                    config_b = (b.context_len, b.batch_size, b.dtype, b.new_tokens)
                    if config_a == config_b:
                        continue
                    out.append(Verdict(j, "identical_across_configs", "suspicious",
                        f"Records {i} and {j} ({a.model}) are different configurations (context {a.context_len} "
                        f"vs {b.context_len}, batch {a.batch_size} vs {b.batch_size}) but report exactly the same "
                        f"{name}, {_num(value)} {unit}; separate measurements do not agree to "
                        f"{_sig_digits(value)} digits.", None, value))
                else:
                    out.append(Verdict(j, "copied_between_models", "suspicious",
                        f"Records {i} ({a.model}) and {j} ({b.model}) are different models but report exactly the "
                        f"same {name}, {_num(value)} {unit}. Was a number copied?", None, value))
    floats = [float(v) for _, r in inf for v in (r.decode_tok_s, r.ttft_s, r.perplexity) if v is not None]
    round_count = sum(_is_round_float(v) for v in floats)
    if len(floats) >= ROUND_MIN_VALUES and round_count >= ROUND_SHARE * len(floats):
        out.append(Verdict(None, "round_numbers", "suspicious",
            f"{round_count} of the {len(floats)} measured speeds, times and perplexities have at most two "
            f"significant digits ({round_count / len(floats):.0%}; more than {ROUND_SHARE:.0%} reads as estimated, "
            "not measured). Record the values the measurement printed.", ROUND_SHARE,
            round_count / len(floats)))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Entry points of the pure core


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


# ---------------------------------------------------------------------------------------------------------------
# CLI shell


def cmd_check_benchmarks(args: argparse.Namespace) -> int:
    """`sparkgrade check-benchmarks FILE [--hardware NAME] [--json]`: exit 1 if any number is impossible."""
    try:
        profile = get_profile(args.hardware)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    records = load_records(args.file)
    score = score_verdicts(check_benchmarks(records, profile))
    if getattr(args, "json", False):
        print(json.dumps({"records": len(records), "verdicts": [v.as_json() for v in score.verdicts]}, indent=1))
    else:
        n_imp = sum(v.severity == "impossible" for v in score.verdicts)
        n_sus = len(score.verdicts) - n_imp
        print(f"{args.file}: {len(records)} record{'s' * (len(records) != 1)} on {profile.display_name}: "
              f"{n_imp} impossible, {n_sus} suspicious, {score.points_lost:g} points lost")
        for v in score.verdicts:
            print(f"[{v.severity}] {v.rule}: {v.message}")
    return 1 if any(v.severity == "impossible" for v in score.verdicts) else 0
