"""Rules across one student's records: consistency between contexts, and signals of invented numbers."""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from autograder.plausibility.margins import (
    DECODE_SPEEDUP_NOISE,
    EXACT_DIGITS,
    KV_GROWTH_MIN,
    MAMBA_DECODE_MIN_RATIO,
    ROUND_MIN_VALUES,
    ROUND_SHARE,
    TTFT_SHRINK_NOISE,
)
from autograder.plausibility.schema import BenchmarkRecord, InferenceRecord, Verdict
from autograder.plausibility.shapes import Shape
from autograder.plausibility.text import _bytes, _is_round_float, _num, _secs, _sig_digits
from reference.catalogue import lookup
from reference.hardware import HardwareProfile
from reference.memory import dtype_bytes, kv_cache_bytes, kv_cache_bytes_per_token, mamba_dims
from reference.model_config import field as config_field
from reference.model_config import hidden_size


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

