"""Roofline figure of a student's benchmark points against a device's bandwidth and compute limits.

x: arithmetic intensity (FLOP per byte moved), y: achieved FLOP/s, both log scale. The roof is
min(peak FLOP/s, bandwidth * intensity). Decode points (one token per step: ~1-2 FLOP/byte at batch 1) sit on the
sloped, memory-bound part; prefill points (the whole prompt per weight read) far to the right, under the flat
compute roof. A point above the roof is physically impossible (the checker says so in words).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on a grading machine

import matplotlib.pyplot as plt

from autograder.plausibility import (
    BenchmarkRecord,
    InferenceRecord,
    TrainRecord,
    parse_records,
    resolve_shape,
    workload,
)
from reference.hardware import HardwareProfile, get_profile
from reference.memory import dtype_bytes

_COLOURS = {"transformer": "tab:blue", "mamba": "tab:green", "moe": "tab:orange", "hybrid": "tab:purple"}


def roofline_points(records: Sequence[BenchmarkRecord]) -> list[dict[str, Any]]:
    """(intensity, achieved FLOP/s) of each inference record's decode and prefill, with labels."""
    points: list[dict[str, Any]] = []
    for i, r in enumerate(records):
        if not isinstance(r, InferenceRecord):
            continue
        w = workload(r, resolve_shape(r))
        if r.decode_tok_s is not None:
            step_flops = w.decode_flops_per_token * r.batch_size
            points.append({
                "record": i, "phase": "decode", "architecture": r.architecture, "label": f"{r.model} @{r.context_len}",
                "intensity": step_flops / w.read_bytes_per_step,
                "flops": w.decode_flops_per_token * r.decode_tok_s * r.batch_size,  # decode_tok_s: per sequence
            })
        points.append({
            "record": i, "phase": "prefill", "architecture": r.architecture, "label": f"{r.model} @{r.context_len}",
            "intensity": w.prefill_flops / max(w.prefill_read_bytes, 1.0),
            "flops": w.prefill_flops / r.ttft_s,
        })
    return points


def roofline_figure(records: Sequence[BenchmarkRecord] | Sequence[Mapping[str, Any]],
                    profile: HardwareProfile | str, path: str | Path) -> Path:
    """Save a PNG roofline of the records on ``profile`` to ``path`` and return the path."""
    hw = get_profile(profile) if isinstance(profile, str) else profile
    given = list(records)
    recs = [r for r in given if isinstance(r, InferenceRecord | TrainRecord)]
    if len(recs) < len(given):
        recs = parse_records(given)
    points = roofline_points(recs)
    widths = {dtype_bytes(r.dtype) for r in recs} or {2.0}

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    xs = [p["intensity"] for p in points] or [1.0]
    x_lo, x_hi = min(min(xs) / 4, 0.1), max(max(xs) * 4, 1e4)
    grid = [x_lo * (x_hi / x_lo) ** (k / 200) for k in range(201)]
    for wb in sorted(widths):
        peak = hw.peak_flops(wb)
        name = {4: "FP32", 2: "BF16", 1: "FP8", 0.5: "FP4"}.get(wb, f"{wb} B")
        note = ", peak estimated" if hw.flops_estimated else ""
        ax.plot(grid, [min(peak, hw.bandwidth_bytes_s * x) for x in grid], color="black",
                lw=1.5, ls="-" if wb == 2 else "--", label=f"roof ({name}{note})")
    ridge = hw.bf16_flops / hw.bandwidth_bytes_s
    ax.axvline(ridge, color="grey", lw=0.6, ls=":")
    for p in points:
        ax.scatter(p["intensity"], p["flops"], color=_COLOURS.get(p["architecture"], "grey"),
                   marker="o" if p["phase"] == "decode" else "^", s=36, edgecolor="black", linewidth=0.4, zorder=3)
        ax.annotate(str(p["record"]), (p["intensity"], p["flops"]), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    for arch, colour in _COLOURS.items():
        if any(p["architecture"] == arch for p in points):
            ax.scatter([], [], color=colour, label=arch)
    ax.scatter([], [], marker="o", color="white", edgecolor="black", label="decode")
    ax.scatter([], [], marker="^", color="white", edgecolor="black", label="prefill (TTFT)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / byte)")
    ax.set_ylabel("achieved FLOP/s")
    ax.set_title(f"Your benchmarks on {hw.display_name}")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, format="png")
    plt.close(fig)
    return out
