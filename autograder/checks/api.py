"""What a hidden check uses: typed comparisons that fail with a message a learner can act on, and the catalogue
entry for a known misconception.

Everything the student returned is untrusted data: ``expect_tensor`` checks type, shape and dtype before any
number is compared, and comparisons never call anything on the student's values but torch's own maths.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import torch

# A last axis with one of these names runs along the sequence: the feedback page plots the error along it.
SEQUENCE_AXES = ("L", "seq", "position", "token")
# Reserved keyword that makes the call harness observe a call (sandbox/inside/harness.py pops it before the call):
# "forwards" records the model's forward calls during the student's call, "reference_generation" runs the grader's
# own trusted generation timing in the same kernel instead of the student's function.
PROBE = "__sparkgrade_probe__"
# Reserved keyword names that turn a call into a gradient call (sandbox/inside/harness.py pops them before the call).
GRAD_WRT = "__sparkgrade_grad_wrt__"
GRAD_OUTPUT = "__sparkgrade_grad_output__"
# Reserved keyword: the call returns (value, [args[i] for i in RETURN_ARGS]) as they are after the call, so a check
# can see what the function updated in place.
RETURN_ARGS = "__sparkgrade_return_args__"
# Plot data a failed check keeps for the feedback page: every entry of CheckFailed.details that is a list of at most
# this many numbers (the largest error along the sequence, the tokens each expert received, ...). Which of them
# become figures is the feedback's business (the registry in autograder.feedback.figures), so a new kind of figure
# changes nothing here.
MAX_PLOT_VALUES = 4096


def plot_details(details: dict[str, Any]) -> dict[str, list[float | int]]:
    """The entries of a check's details that are plot data: bounded lists of numbers (bools are not numbers)."""
    return {k: list(v) for k, v in details.items()
            if isinstance(k, str) and isinstance(v, list) and len(v) <= MAX_PLOT_VALUES
            and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)}


class CheckFailed(AssertionError):
    """The student's answer is wrong. ``details`` carries numbers for diagnosis and feedback figures."""

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


class StudentError(Exception):
    """The student's function did not give an answer: it raised, timed out, or its kernel died."""

    def __init__(self, function: str, status: str, message: str) -> None:
        super().__init__(message)
        self.function = function
        self.status = status


@dataclass(frozen=True)
class Misconception:
    """A known mistake, as a mutated reference with the student function's signature.

    When a check fails, the engine runs ``mutant`` on the inputs the check sent and, if the student's outputs
    match it, names the mistake and explains it."""

    name: str
    function: str
    explanation: str
    mutant: Callable[..., Any] = field(repr=False)


@dataclass(frozen=True)
class Tolerance:
    """How closely a check compared a student's value with the reference's: exact when both are 0.

    Diagnosis compares the student's values with a mutant's under the check's own tolerances, so a mutant is never
    named for a difference the check itself would not see (nor matched where the check demands exact integers)."""

    rtol: float
    atol: float

    @property
    def exact(self) -> bool:
        return self.rtol == 0 and self.atol == 0


EXACT = Tolerance(0.0, 0.0)
_TOLERANCES: ContextVar[list[Tolerance] | None] = ContextVar("sparkgrade_check_tolerances", default=None)


@contextmanager
def recording_tolerances() -> Iterator[list[Tolerance]]:
    """Collect the tolerance of every expect_* comparison made inside the block (one check's run)."""
    seen: list[Tolerance] = []
    token = _TOLERANCES.set(seen)
    try:
        yield seen
    finally:
        _TOLERANCES.reset(token)


def _record(tolerance: Tolerance) -> None:
    seen = _TOLERANCES.get()
    if seen is not None:
        seen.append(tolerance)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def expect_tensor(value: Any, *, name: str, shape: tuple[int, ...] | None = None,
                  dtype: torch.dtype | None = None) -> torch.Tensor:
    """The value must be a tensor of this shape and dtype; fails with what was found instead."""
    if not isinstance(value, torch.Tensor):
        raise CheckFailed(f"{name} should be a torch.Tensor, got {type(value).__name__}")
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise CheckFailed(f"{name} has shape {tuple(value.shape)}, expected {tuple(shape)}")
    if dtype is not None and value.dtype != dtype:
        raise CheckFailed(f"{name} has dtype {_dtype_name(value.dtype)}, expected {_dtype_name(dtype)}")
    return value


def tolerance_for(dtype: torch.dtype, tolerances: dict[str, tuple[float, float]]) -> tuple[float, float]:
    name = _dtype_name(dtype)
    return tolerances.get(name, tolerances.get("float32", (6e-4, 2e-3)))


def largest_error(actual: torch.Tensor, expected: torch.Tensor) -> tuple[float, tuple[int, ...]]:
    """The largest absolute difference and where it is (an index into the tensor)."""
    diff = (actual.double() - expected.double()).abs()
    diff = torch.where(torch.isnan(diff), torch.full_like(diff, float("inf")), diff)
    flat = int(torch.argmax(diff))
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), diff.shape)) if diff.dim() else ()
    return float(diff.reshape(-1)[flat]) if diff.numel() else 0.0, index


def is_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float, atol: float) -> bool:
    if actual.shape != expected.shape:
        return False
    # torch.isclose: equal infinities are close, NaN never is.
    return bool(torch.isclose(actual.double(), expected.double(), rtol=rtol, atol=atol).all())


def expect_close(actual: Any, expected: torch.Tensor, *, name: str, rtol: float, atol: float,
                 axes: tuple[str, ...] | None = None, check_dtype: bool = True) -> torch.Tensor:
    """The student's tensor must equal the reference within rtol/atol (elementwise, as torch.allclose).

    ``axes`` names the dimensions (e.g. ("batch", "dim", "L")) so the failure says where the largest error is.
    When the last axis is the sequence (``axes[-1]`` in SEQUENCE_AXES) the largest error at each position is kept
    in ``details['error_profile']`` for the feedback figure."""
    _record(Tolerance(rtol, atol))
    got = expect_tensor(actual, name=name, shape=tuple(expected.shape),
                        dtype=expected.dtype if check_dtype else None)
    if is_close(got, expected, rtol, atol):
        return got
    err, index = largest_error(got, expected)
    where = ", ".join(f"{ax}={i}" for ax, i in zip(axes, index, strict=False)) if axes else str(list(index))
    bad = (got.double() - expected.double()).abs() > atol + rtol * expected.double().abs()
    share = float(bad.float().mean())
    details: dict[str, Any] = {"output": name, "max_abs_error": err, "at": list(index), "share_wrong": share}
    if axes and axes[-1] in SEQUENCE_AXES and expected.shape[-1] > 1:
        profile = (got.double() - expected.double()).abs()
        profile = profile.reshape(-1, expected.shape[-1]).amax(dim=0)
        details["error_profile"] = [float(x) for x in profile[:512]]
    raise CheckFailed(
        f"{name} differs from the reference: largest error {err:.3g} at {where} "
        f"({share:.0%} of the values outside rtol={rtol:g}, atol={atol:g})",
        details,
    )


def expect_equal(actual: Any, expected: Any, *, name: str) -> Any:
    """Exact equality for integers, index tensors and small structures."""
    _record(EXACT)
    if isinstance(expected, torch.Tensor):
        actual = expect_tensor(actual, name=name, shape=tuple(expected.shape))
        if not torch.equal(actual.to(expected.dtype), expected):
            wrong = int((actual.to(expected.dtype) != expected).sum())
            raise CheckFailed(f"{name}: {wrong} of {expected.numel()} values differ from the reference",
                              {"output": name, "wrong": wrong})
        return actual
    if isinstance(expected, bool | int | float | str) and type(actual) is not type(expected):
        if not (isinstance(expected, float) and isinstance(actual, int) and not isinstance(actual, bool)):
            raise CheckFailed(f"{name} should be {type(expected).__name__}, got {type(actual).__name__}")
    if actual != expected:
        raise CheckFailed(f"{name} is {actual!r}, expected {expected!r}")
    return actual


def expect_number(actual: Any, expected: float, *, name: str, rtol: float = 1e-6, atol: float = 0.0) -> float:
    """A scalar: a Python number or a 0-d / one-element tensor."""
    _record(Tolerance(rtol, atol))
    if isinstance(actual, torch.Tensor):
        if actual.numel() != 1:
            raise CheckFailed(f"{name} should be a scalar, got a tensor of shape {tuple(actual.shape)}")
        actual = float(actual.reshape(()).double())
    if isinstance(actual, bool) or not isinstance(actual, int | float):
        raise CheckFailed(f"{name} should be a number, got {type(actual).__name__}")
    if not abs(actual - expected) <= atol + rtol * abs(expected):
        raise CheckFailed(f"{name} is {actual:.6g}, expected {expected:.6g}",
                          {"output": name, "value": actual, "expected": expected})
    return float(actual)
