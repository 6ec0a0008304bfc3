"""Say why a wrong answer is wrong: match the student's outputs against mutated references (known misconceptions).

Pure functions of data: the calls the failed checks of one function made (inputs the grader generated, outputs the
student returned), the tolerances those checks compared with, and the lab's catalogue (its misconceptions and the
references they mutate). The mutants and references are trusted code run on trusted inputs.

A wrong name is worse than none, so a misconception is named only when
- its mutant reproduces the student's value for every call of every failed check of the function, under the
  tolerance of that check (integers and index tensors exactly: the checks compare them exactly), and
- on each of those checks it differs from the reference on at least one call (it would fail the check itself):
  a mutant that agrees with the reference on a check's inputs explains nothing about that check.
When several misconceptions pass both tests they are all named: the grader does not guess between them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from autograder.checks.api import GRAD_OUTPUT, GRAD_WRT, RETURN_ARGS, Misconception, Tolerance

NO_MATCH = "no known misconception matches"
MATCH_PREFIX = "Looks like: "
# Floats compared by a check that recorded no tolerance (a hand-written comparison): near-equality only.
PLAIN_FLOAT = Tolerance(1e-6, 1e-9)

DtypeTolerance = Callable[[torch.dtype], tuple[float, float]]


@dataclass(frozen=True)
class RecordedCall:
    """One call a check made into the sandbox and the (validated, untrusted) value that came back."""

    function: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    value: Any


@dataclass(frozen=True)
class FailedCheck:
    """A check that failed on a wrong answer: its calls of the function and the tolerances it compared with."""

    check: str
    function: str
    calls: tuple[RecordedCall, ...]
    tolerances: tuple[Tolerance, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

    def tolerance(self) -> Tolerance | None:
        """The tightest comparison the check made (None: it used none of expect_*, so the dtype's default)."""
        if not self.tolerances:
            return None
        return Tolerance(min(t.rtol for t in self.tolerances), min(t.atol for t in self.tolerances))


def close_structures(a: Any, b: Any, tolerance: Tolerance | None, dtype_tolerance: DtypeTolerance) -> bool:
    """Same structure and every value equal within ``tolerance`` (integers, bools, strings and integer tensors
    exactly; float tensors by ``tolerance``, or the dtype's tolerance when the check recorded none)."""
    if isinstance(b, torch.Tensor):
        if not isinstance(a, torch.Tensor) or a.shape != b.shape or a.dtype != b.dtype:
            return False
        if not (b.is_floating_point() or b.is_complex()):
            return bool(torch.equal(a, b))
        rtol, atol = (tolerance.rtol, tolerance.atol) if tolerance is not None else dtype_tolerance(b.dtype)
        # NaN where the mutant has NaN is agreement here (a scan that blows up does so at the same places); the
        # check itself never accepts NaN against the reference.
        return bool(torch.isclose(a.double(), b.double(), rtol=rtol, atol=atol, equal_nan=True).all())
    if isinstance(b, list | tuple):
        return isinstance(a, list | tuple) and len(a) == len(b) and all(
            close_structures(x, y, tolerance, dtype_tolerance) for x, y in zip(a, b, strict=True))
    if isinstance(b, dict):
        return isinstance(a, dict) and a.keys() == b.keys() and all(
            close_structures(a[k], b[k], tolerance, dtype_tolerance) for k in b)
    if isinstance(b, bool) or b is None or isinstance(b, str):
        return type(a) is type(b) and a == b
    if isinstance(b, int) and (tolerance is None or tolerance.exact):
        return type(a) is int and a == b  # counts and byte sizes: expect_equal demands them exactly
    if isinstance(b, int | float):
        if isinstance(a, torch.Tensor) and a.numel() == 1 and a.is_floating_point():
            a = float(a)
        if isinstance(a, bool) or not isinstance(a, int | float):
            return False
        t = tolerance or PLAIN_FLOAT
        return abs(float(a) - float(b)) <= t.atol + t.rtol * abs(float(b))
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


def _run(fn: Callable[..., Any], call: RecordedCall) -> Any:
    """fn on a copy of the call's inputs; gradient and in-place calls are answered as sandbox/inside/harness.py does."""
    args, kwargs = list(_clone(call.args)), _clone(call.kwargs)
    wrt, grad_output = kwargs.pop(GRAD_WRT, None), kwargs.pop(GRAD_OUTPUT, None)
    returned = kwargs.pop(RETURN_ARGS, None)
    if wrt is None:
        value = fn(*args, **kwargs)
        return value if returned is None else (value, [args[i] for i in returned])
    with torch.enable_grad():
        for i in wrt:
            args[i] = args[i].detach().requires_grad_(True)
        out = fn(*args, **kwargs)
        first = out[0] if isinstance(out, tuple | list) else out
        grads = torch.autograd.grad(first, [args[i] for i in wrt], grad_output, allow_unused=True)
    return tuple(torch.zeros_like(args[i]) if g is None else g for i, g in zip(wrt, grads, strict=True))


def explains(m: Misconception, failed: Sequence[FailedCheck], reference: Callable[..., Any] | None,
             dtype_tolerance: DtypeTolerance) -> bool:
    """Whether the mutant reproduces every failed check of its function and differs from the reference on each."""
    if reference is None or not failed:
        return False  # without the reference nothing proves the mutant is wrong where the student is
    try:
        for check in failed:
            calls = [c for c in check.calls if c.function == m.function]
            if not calls:
                return False
            tol = check.tolerance()
            mutated = [_run(m.mutant, c) for c in calls]
            if not all(close_structures(c.value, v, tol, dtype_tolerance) for c, v in zip(calls, mutated, strict=True)):
                return False
            if all(close_structures(v, _run(reference, c), tol, dtype_tolerance)
                   for c, v in zip(calls, mutated, strict=True)):
                return False
    except Exception:  # a mutant that does not apply to these inputs simply does not match
        return False
    return True


def matching_misconceptions(failed: Sequence[FailedCheck], catalogue: Sequence[Misconception],
                            references: Mapping[str, Callable[..., Any]],
                            dtype_tolerance: DtypeTolerance) -> list[Misconception]:
    """Every misconception of the failed checks' function that explains all of them, in catalogue order."""
    functions = {c.function for c in failed}
    if len(functions) != 1:
        return []
    (function,) = functions
    return [m for m in catalogue if m.function == function
            and explains(m, failed, references.get(function), dtype_tolerance)]


def describe(found: Sequence[Misconception], details: Mapping[str, Any], has_catalogue: bool) -> str:
    """One or two sentences for the learner: the misconception(s) by name, or the largest error and where."""
    if len(found) == 1:
        return f"{MATCH_PREFIX}{found[0].name}. {found[0].explanation}"
    if found:
        names = " or ".join(m.name for m in found)
        return (f"{MATCH_PREFIX}{names}. These inputs cannot tell them apart: "
                + " ".join(f"({i}) {m.explanation}" for i, m in enumerate(found, 1)))
    if "max_abs_error" in details:
        return (f"{NO_MATCH}; the largest error is {details['max_abs_error']:.3g} in "
                f"{details.get('output', 'the output')} at index {details.get('at')}.")
    if has_catalogue:
        return f"{NO_MATCH}."
    return ""  # nothing to match against (e.g. a check of submitted benchmark numbers): the message says it all


def diagnose_function(failed: Sequence[FailedCheck], catalogue: Sequence[Misconception],
                      references: Mapping[str, Callable[..., Any]],
                      dtype_tolerance: DtypeTolerance) -> dict[str, str]:
    """check id -> diagnosis, for the failed checks of one function (a mutant must explain all of them)."""
    found = matching_misconceptions(failed, catalogue, references, dtype_tolerance)
    return {c.check: describe(found, c.details, any(m.function == c.function for m in catalogue)) for c in failed}
