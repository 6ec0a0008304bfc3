"""Say why a wrong answer is wrong: match the student's outputs against mutated references (known misconceptions).

Pure functions of data: the calls a failed check made (inputs the grader generated, outputs the student
returned) and the lab's catalogue of misconceptions. The mutants are trusted code run on trusted inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from autograder.checks.api import Misconception, is_close

NO_MATCH = "no known misconception matches"


@dataclass(frozen=True)
class RecordedCall:
    """One call a check made into the sandbox and the (validated, untrusted) value that came back."""

    function: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    value: Any


def close_structures(a: Any, b: Any, tolerance: Callable[[torch.dtype], tuple[float, float]]) -> bool:
    """Same structure and every tensor/number close (tensor tolerance by the reference's dtype)."""
    if isinstance(b, torch.Tensor):
        if not isinstance(a, torch.Tensor) or a.shape != b.shape or a.dtype != b.dtype:
            return False
        rtol, atol = tolerance(b.dtype)
        return is_close(a, b, rtol, atol)
    if isinstance(b, list | tuple):
        return isinstance(a, list | tuple) and len(a) == len(b) and all(
            close_structures(x, y, tolerance) for x, y in zip(a, b, strict=True))
    if isinstance(b, dict):
        return isinstance(a, dict) and a.keys() == b.keys() and all(
            close_structures(a[k], b[k], tolerance) for k in b)
    if isinstance(b, bool) or b is None or isinstance(b, str):
        return bool(a == b)
    if isinstance(b, int | float):
        if isinstance(a, torch.Tensor) and a.numel() == 1:
            a = float(a)
        return isinstance(a, int | float) and abs(float(a) - float(b)) <= 1e-6 + 1e-4 * abs(float(b))
    return False


def _clone(value: Any) -> Any:
    """Mutants get their own copies: some functions (the decode step) update a tensor in place."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, list | tuple):
        return type(value)(_clone(v) for v in value)
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    return value


def match_misconception(calls: Sequence[RecordedCall], catalogue: Sequence[Misconception],
                        tolerance: Callable[[torch.dtype], tuple[float, float]]) -> Misconception | None:
    """The first misconception whose mutant reproduces the student's value for every call of its function."""
    for m in catalogue:
        relevant = [c for c in calls if c.function == m.function]
        if not relevant:
            continue
        try:
            if all(close_structures(c.value, m.mutant(*_clone(c.args), **_clone(c.kwargs)), tolerance)
                   for c in relevant):
                return m
        except Exception:  # a mutant that does not apply to these inputs simply does not match
            continue
    return None


def diagnose(calls: Sequence[RecordedCall], catalogue: Sequence[Misconception],
             tolerance: Callable[[torch.dtype], tuple[float, float]], failure_details: dict[str, Any]) -> str:
    """One or two sentences for the learner: the misconception by name, or the largest error and where."""
    found = match_misconception(calls, catalogue, tolerance)
    if found is not None:
        return f"Looks like: {found.name}. {found.explanation}"
    if "max_abs_error" in failure_details:
        return (f"{NO_MATCH}; the largest error is {failure_details['max_abs_error']:.3g} in "
                f"{failure_details.get('output', 'the output')} at index {failure_details.get('at')}.")
    if any(m.function == c.function for c in calls for m in catalogue):
        return f"{NO_MATCH}."
    return ""  # nothing to match against (e.g. a check of submitted benchmark numbers): the message says it all
