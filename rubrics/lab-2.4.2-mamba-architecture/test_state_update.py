"""Hidden checks for selective_state_update, the one-token decode step."""

from __future__ import annotations

import torch

from autograder.checks.api import expect_close
from reference import selective_scan as reference_scan
from reference import selective_state_update as reference_step


def test_state_update_step(student, tol, scan_inputs, rng):
    x = scan_inputs(L=1)
    state = torch.randn(2, 8, 4, generator=rng)
    args = (x["u"][..., 0], x["delta"][..., 0], x["A"], x["B"][..., 0], x["C"][..., 0])
    kwargs = dict(D=x["D"], z=x["z"][..., 0], dt_bias=x["delta_bias"], dt_softplus=True)
    got = student.selective_state_update(state.clone(), *args, **kwargs)
    want = reference_step(state.clone(), *args, **kwargs)
    rtol, atol = tol(torch.float32)
    expect_close(got, want, name="out", rtol=rtol, atol=atol, axes=("batch", "dim"))


def test_state_update_matches_scan(student, tol, scan_inputs):
    # Each step's output depends on the state the previous steps left: feed the reference state forward and
    # compare every step's output with the full scan's output at that position.
    x = scan_inputs(L=6)
    kwargs = dict(D=x["D"], z=None, dt_bias=x["delta_bias"], dt_softplus=True)
    want = reference_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], None, x["delta_bias"], True,
                          backend="sequential")
    state = torch.zeros(2, 8, 4)
    outs = []
    for l in range(6):
        step = (x["u"][..., l], x["delta"][..., l], x["A"], x["B"][..., l], x["C"][..., l])
        outs.append(student.selective_state_update(state.clone(), *step, **kwargs))
        reference_step(state, *step, **kwargs)
    rtol, atol = tol(torch.float32)
    for l, got in enumerate(outs):
        expect_close(got, want[..., l], name=f"out at step {l}", rtol=rtol, atol=atol, axes=("batch", "dim"))
