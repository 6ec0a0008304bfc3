"""The order people expect to read student ids in: s7 before s10 (natural order), case-insensitively."""

from __future__ import annotations

import re

_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple[tuple[tuple[int, int | str], ...], str]:
    """A sort key that compares runs of digits as numbers: "2" < "10" < "s7" < "s10" < "S11" < "t2". Each part is
    tagged so a number is never compared with text (which Python refuses); the original text breaks ties."""
    parts = tuple((0, int(p)) if p.isdigit() else (1, p.casefold()) for p in _DIGITS.split(text) if p)
    return parts, text
