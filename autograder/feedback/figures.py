"""Figures for feedback pages and the class report, as self-contained PNG data: URIs (a page works copied alone).

Pure functions of numbers; matplotlib's Agg backend, no display. Every input may come from a check's details or a
student's benchmarks.json: non-finite values are shown as such, never trusted to be well formed.

A failed check's figures come from a registry keyed by the details entry they draw (``CHECK_FIGURES``): a check
keeps its plot data in ``CheckFailed(message, {key: [numbers]})``, the check plugin keeps every such entry, and a new
kind of figure is one function registered here with ``@check_figure(key)``.
"""

from __future__ import annotations

import base64
import io
import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on a grading machine

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from autograder.feedback.roofline import roofline_figure

MAX_POINTS = 4096  # a figure of more values than this is downsampled to its maxima (details are bounded anyway)
_INK = "#1f2937"
_BAD = "#dc2626"
_GOOD = "#16a34a"
_REF = "#94a3b8"


@dataclass(frozen=True)
class Figure:
    """A figure as a page shows it: a data: URI, its alt text and its caption."""

    uri: str
    alt: str
    caption: str


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def numbers(values: Any, limit: int = MAX_POINTS) -> list[float] | None:
    """A list of floats from untrusted JSON (None if it is not a non-empty list of numbers)."""
    if not isinstance(values, list) or not values or len(values) > 100_000:
        return None
    out: list[float] = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float):
            return None
        out.append(float(v))
    if len(out) > limit:  # keep every peak visible: the max of each bucket
        step = math.ceil(len(out) / limit)
        out = [max(out[i:i + step]) for i in range(0, len(out), step)]
    return out


def error_profile_png(profile: Sequence[float]) -> bytes:
    """The largest absolute error at each position of the last axis (the sequence step, for a scan)."""
    xs = list(range(len(profile)))
    finite = [(x, v) for x, v in zip(xs, profile, strict=True) if math.isfinite(v)]
    bad = [x for x, v in zip(xs, profile, strict=True) if not math.isfinite(v)]
    positive = [v for _, v in finite if v > 0]
    log = bool(positive) and max(positive) / min(positive) > 50
    floor = min(positive) / 10 if positive else 1.0

    fig, ax = plt.subplots(figsize=(6.4, 2.8), dpi=110)
    if finite:
        fx = [x for x, _ in finite]
        fy = [max(v, floor) if log else v for _, v in finite]
        if len(finite) == 1:
            ax.scatter(fx, fy, color=_BAD, zorder=3)
        else:
            ax.plot(fx, fy, color=_BAD, lw=1.6)
            ax.fill_between(fx, fy, floor if log else 0, color=_BAD, alpha=0.12)
    if log:
        ax.set_yscale("log")
    if bad:
        top = (max(positive) * 3 if log else max((v for _, v in finite), default=1.0) * 1.1) if finite else 1.0
        ax.scatter(bad, [top] * len(bad), marker="x", color="black", zorder=4,
                   label=f"NaN or infinite ({len(bad)} position{'s' * (len(bad) != 1)})")
        ax.legend(fontsize=8, loc="upper left")
    ax.set_xlim(-0.5, max(len(profile) - 0.5, 0.5))
    ax.set_xlabel("position along the sequence (last axis of the output)")
    ax.set_ylabel("largest |yours − reference|")
    ax.grid(True, alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    return _png(fig)


def expert_load_png(load: Sequence[float], reference: Sequence[float] | None = None) -> bytes:
    """Tokens routed to each expert (yours, and the reference's when known), with the perfectly balanced level."""
    n = len(load)
    fig, ax = plt.subplots(figsize=(6.4, 2.8), dpi=110)
    xs = list(range(n))
    width = 0.4 if reference is not None else 0.7
    shift = width / 2 if reference is not None else 0.0
    ax.bar([x - shift for x in xs], [v if math.isfinite(v) else 0.0 for v in load], width, color=_BAD,
           label="your routing")
    if reference is not None:
        ax.bar([x + shift for x in xs], [v if math.isfinite(v) else 0.0 for v in reference], width, color=_REF,
               label="reference routing")
    finite = [v for v in load if math.isfinite(v)]
    if finite:
        ax.axhline(sum(finite) / n, color=_INK, lw=1, ls="--", label="perfect balance")
    ax.set_xlabel("expert")
    ax.set_ylabel("tokens routed")
    if n <= 32:
        ax.set_xticks(xs)
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    return _png(fig)


def score_histogram_png(scores: Sequence[float], max_score: float) -> bytes:
    """Distribution of the class's scores, in points out of max_score."""
    fig, ax = plt.subplots(figsize=(6.4, 2.8), dpi=110)
    top = max(max_score, max(scores, default=0.0), 1.0)
    bins = min(20, max(5, math.ceil(top)))
    ax.hist(scores, bins=bins, range=(0, top), color="#2563eb", edgecolor="white")
    ax.set_xlabel(f"score (out of {max_score:g})")
    ax.set_ylabel("submissions")
    locator = ax.yaxis.get_major_locator()
    if isinstance(locator, MaxNLocator):  # the default AutoLocator is one: whole submissions only
        locator.set_params(integer=True)
    ax.grid(True, axis="y", alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    return _png(fig)


def roofline_png(records: Sequence[Any], profile: str) -> bytes:
    """autograder.roofline's figure of parsed benchmark records, as bytes."""
    with tempfile.TemporaryDirectory(prefix="sparkgrade-fig-") as tmp:
        path = roofline_figure(records, profile, Path(tmp) / "roofline.png")
        data = path.read_bytes()
    plt.close("all")
    return data


# ---------------------------------------------------------------------------------------------------------------
# A failed check's figures: one renderer per details key, in the order they appear on the page.

FigureRenderer = Callable[[Mapping[str, Any]], Figure | None]
CHECK_FIGURES: dict[str, FigureRenderer] = {}


def check_figure(key: str) -> Callable[[FigureRenderer], FigureRenderer]:
    """Register ``render(details) -> Figure | None`` for the details entry ``key`` (None: nothing worth drawing)."""

    def register(render: FigureRenderer) -> FigureRenderer:
        CHECK_FIGURES[key] = render
        return render

    return register


def check_figures(details: Mapping[str, Any]) -> tuple[Figure, ...]:
    """The figures of every registered key present in a failed check's details (untrusted numbers: each renderer
    validates its own entries; anything else in details is ignored)."""
    out = [render(details) for key, render in CHECK_FIGURES.items() if key in details]
    return tuple(f for f in out if f is not None)


@check_figure("error_profile")
def _error_profile_figure(details: Mapping[str, Any]) -> Figure | None:
    profile = numbers(details.get("error_profile"))
    if not profile:
        return None
    return Figure(
        data_uri(error_profile_png(profile)),
        "Your largest error against the reference at each position along the sequence",
        "Your largest error against the reference at each position along the sequence. Wrong from the "
        "first step: look at the update rule or the initial state. Small at first and growing: something "
        "accumulates wrongly from one step to the next. Wrong at a few positions only: look at the edges "
        "(the first or last step).",
    )


@check_figure("expert_load")
def _expert_load_figure(details: Mapping[str, Any]) -> Figure | None:
    load = numbers(details.get("expert_load"))
    if not load:
        return None
    ref = numbers(details.get("expert_load_reference"))  # drawn beside the student's bars, not on its own
    ref = ref if ref and len(ref) == len(load) else None
    return Figure(
        data_uri(expert_load_png(load, ref)),
        "Tokens your router sent to each expert",
        "Tokens your router sent to each expert" + (", beside the reference router's" if ref else "")
        + ". The dashed line is a perfectly balanced load.",
    )
