"""The published-measurements suite (tests/data/published/): records built from printed numbers, and their margins.

Each measurement gives ONE record field (``measured``: decode_tok_s or ttft_s); the record's other judged fields
are fillers that no rule may be judged on (FILLER_RULES), so a verdict always concerns a printed number. Shared by
tests/test_published_benchmarks.py and benchmarks/published_margins.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autograder.plausibility import (
    InferenceRecord,
    decode_limit,
    parse_records,
    resolve_shape,
    ttft_limit,
    workload,
)
from reference.hardware import get_profile

DATA = Path(__file__).parent / "data" / "published"
CONFIGS: dict[str, dict[str, Any]] = {
    k: v for k, v in json.loads((DATA / "configs.json").read_text()).items() if not k.startswith("_")}
_DOC = json.loads((DATA / "measurements.json").read_text())
SOURCES: dict[str, dict[str, str]] = _DOC["sources"]
MEASUREMENTS: list[dict[str, Any]] = _DOC["measurements"]

# The field each impossible rule judges; a verdict of a rule on a field the source did not print is left out.
RULE_FIELD = {"decode_bound": "decode_tok_s", "ttft_bound": "ttft_s", "memory_floor": "peak_mem_bytes",
              "memory_ceiling": "peak_mem_bytes"}
FILLER_TTFT_S = 10.0  # long enough for any bound; a printed TTFT replaces it
FILLER_TAIL = 12_345  # keeps the filler peak memory from being a round number


def record(m: dict[str, Any], **over: Any) -> dict[str, Any]:
    """The benchmark record of one published measurement (``over`` replaces fields: fabrications)."""
    cfg = CONFIGS[m["model"]]
    hw = get_profile(m["device"])
    base = {"model": m["model"], "architecture": m["architecture"], "dtype": m["dtype"],
            "batch_size": m["batch_size"], "context_len": m["context_len"], "new_tokens": m["new_tokens"],
            "device": hw.display_name, "config": cfg, "params_total": 1, "params_active": 1,
            "ttft_s": FILLER_TTFT_S, "decode_tok_s": None, "peak_mem_bytes": 1}
    (probe,) = parse_records([base])
    shape = resolve_shape(probe)
    assert shape.reference_total and shape.reference_active
    base.update(params_total=m.get("params_total", shape.reference_total), params_active=shape.reference_active,
                peak_mem_bytes=hw.usable_memory_bytes - FILLER_TAIL)
    base[m["measured"]] = m["value"]
    return {**base, **over}


@dataclass(frozen=True)
class Margin:
    """A published number against its bound: measured / bound for decode, bound / measured for TTFT (<= 1: fits)."""

    index: int
    device: str
    model: str
    field: str
    value: float
    bound: float
    ratio: float
    memory_bound: bool


def margin(index: int, m: dict[str, Any], **over: Any) -> Margin:
    rec = record(m, **over)
    (r,) = parse_records([rec])
    assert isinstance(r, InferenceRecord)
    shape = resolve_shape(r)
    w = workload(r, shape)
    hw = get_profile(m["device"])
    if m["measured"] == "decode_tok_s":
        lim = decode_limit(r, shape, w, hw)
        value = float(rec["decode_tok_s"])
        return Margin(index, m["device"], m["model"], "decode_tok_s", value, lim.bound, value / lim.bound,
                      lim.memory_bound)
    lim = ttft_limit(r, shape, w, hw)
    value = float(rec["ttft_s"])
    return Margin(index, m["device"], m["model"], "ttft_s", value, lim.bound, lim.bound / value, lim.memory_bound)
