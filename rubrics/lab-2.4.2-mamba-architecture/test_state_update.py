"""Hidden checks for selective_state_update, the one-token decode step."""

from __future__ import annotations

import torch

from autograder.checks.api import expect_close
from reference import selective_scan as reference_scan
from reference import selective_state_update as reference_step


def test_state_update_step(student, tol, scan_inputs, rng):
    # The contract: the output of this step AND the state, updated in place (the call hands the student's state
    # back as the function left it). Variable (b, N) and grouped (b, G, N) B/C.
    rtol, atol = tol(torch.float32)
    for bc in ("variable", "grouped"):
        x = scan_inputs(L=1, bc=bc, groups=4)
        state = torch.randn(2, 8, 4, generator=rng)
        args = (x["u"][..., 0], x["delta"][..., 0], x["A"], x["B"][..., 0], x["C"][..., 0])
        kwargs = dict(D=x["D"], z=x["z"][..., 0], dt_bias=x["delta_bias"], dt_softplus=True)
        got, (after,) = student.updating("selective_state_update", state.clone(), *args, returned=[0], **kwargs)
        want_state = state.clone()
        want = reference_step(want_state, *args, **kwargs)
        expect_close(got, want, name=f"out ({bc} B/C)", rtol=rtol, atol=atol, axes=("batch", "dim"))
        expect_close(after, want_state, name=f"state after the step ({bc} B/C; it must be updated in place)",
                     rtol=rtol, atol=atol, axes=("batch", "dim", "N"))


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
