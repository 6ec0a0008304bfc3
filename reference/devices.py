"""Which hardware profile a benchmark record's free-text ``device`` names (what torch.cuda.get_device_name or the
lab's own code reported): "NVIDIA GB10" -> dgx-spark, "NVIDIA H100 80GB HBM3" -> h100-sxm, and so on.

Used to notice a record that contradicts the course's hardware (measured on another machine), not to choose the
limits: the grader judges by the course's declared hardware. Unknown names map to None, never to a guess.
"""

from __future__ import annotations

import re

# Most specific first: "H100" must not take an "H200", "L4" must not take an "L40S" or "L4T".
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("dgx-spark", re.compile(r"\bGB10\b|\bDGX\s*Spark\b", re.I)),
    ("h200", re.compile(r"(?<!G)H200\b", re.I)),  # not a GH200 (its GPU is an H100 96GB or H200 144GB)
    ("h100-sxm", re.compile(r"\bH100\b", re.I)),
    ("a100-80gb", re.compile(r"\bA100\b", re.I)),
    ("rtx-4090", re.compile(r"\b(?:RTX\s*)?4090\b", re.I)),
    ("l4", re.compile(r"\bL4\b(?![0-9T])", re.I)),
    ("cpu", re.compile(r"^\s*cpu\b|\b(?:x86_64|aarch64|EPYC|Xeon)\b", re.I)),
)


def profile_for_device(device: str) -> str | None:
    """The profile name a device string names, or None when it names none we know."""
    for name, pattern in _PATTERNS:
        if pattern.search(device or ""):
            return name
    return None


def device_mismatches(records: object, hardware: str) -> list[str]:
    """One line per benchmark record whose ``device`` names another profile than ``hardware``: its numbers were
    measured elsewhere (or copied), and the course's limits may not fit them. ``records`` is the untrusted parsed
    JSON; anything that is not a list of objects with a string device is simply not compared."""
    if not isinstance(records, list):
        return []
    lines = []
    for i, rec in enumerate(records):
        device = rec.get("device") if isinstance(rec, dict) else None
        named = profile_for_device(device) if isinstance(device, str) else None
        if isinstance(device, str) and named is not None and named != hardware:
            lines.append(f"record {i}: device {device[:80]!r} is {named}, but this course is graded as {hardware}: "
                         f"its numbers are judged by {hardware}'s limits")
    return lines
