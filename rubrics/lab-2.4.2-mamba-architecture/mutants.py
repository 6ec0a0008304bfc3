"""Wrong variants of lab 2.4.2's functions that are no diagnosable misconception: the mutation harness
(tests/test_mutation.py) proves every check fails at least one of these or a catalogued mistake."""

from __future__ import annotations

import torch

from autograder.checks.api import Misconception
from reference import selective_scan, selective_state_update


def _zeros(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, return_last_state=False):
    y = torch.zeros_like(u)
    return (y, torch.zeros(u.shape[0], u.shape[1], A.shape[1])) if return_last_state else y


def _fp32_out(u, *args, **kwargs):
    out = selective_scan(u.float(), *args, **kwargs, backend="sequential")
    return out


def _detached(*args, **kwargs):
    with torch.no_grad():
        return selective_scan(*args, **kwargs, backend="sequential")


def _last_state_zero(*args, return_last_state=False, **kwargs):
    out = selective_scan(*args, **kwargs, return_last_state=return_last_state, backend="sequential")
    return (out[0], torch.zeros_like(out[1])) if return_last_state else out


def _step_from_zero_state(state, *args, **kwargs):
    return selective_state_update(torch.zeros_like(state), *args, **kwargs)


MUTANTS = [
    Misconception("zeros", "selective_scan", "", _zeros),
    Misconception("fp32 output for bf16 input", "selective_scan", "", _fp32_out),
    Misconception("no autograd graph", "selective_scan", "", _detached),
    Misconception("last state zero", "selective_scan", "", _last_state_zero),
    Misconception("zeros", "selective_state_update", "", lambda state, x, *a, **k: torch.zeros_like(x)),
    Misconception("state ignored", "selective_state_update", "", _step_from_zero_state),
]
