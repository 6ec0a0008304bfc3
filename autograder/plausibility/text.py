"""Wording helpers of the verdict messages: units, significant digits, record labels."""

from __future__ import annotations

import math

from autograder.plausibility.margins import ROUND_BYTES
from autograder.plausibility.schema import BenchmarkRecord


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

