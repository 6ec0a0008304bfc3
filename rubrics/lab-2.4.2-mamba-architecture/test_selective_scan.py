"""Hidden checks for selective_scan: one behaviour each, so a bug costs only its share."""

from __future__ import annotations

import torch

from autograder.checks.api import expect_close, expect_tensor
from reference import selective_scan as reference_scan

AXES = ("batch", "dim", "L")


def check(student, tol, x, keys, **flags):
    args = [x[k] for k in ("u", "delta", "A", "B", "C")]
    kwargs = {k: x[k] for k in keys}
    kwargs.update(flags)
    got = student.selective_scan(*args, **kwargs)
    want = reference_scan(*args, **kwargs, backend="sequential")
    rtol, atol = tol(x["u"].dtype)
    return got, want, rtol, atol


def test_scan_core_recurrence(student, tol, scan_inputs):
    got, want, rtol, atol = check(student, tol, scan_inputs(), ())
    expect_close(got, want, name="out", rtol=rtol, atol=atol, axes=AXES)


def test_scan_fixed_BC(student, tol, scan_inputs):
    got, want, rtol, atol = check(student, tol, scan_inputs(bc="fixed"), ())
    expect_close(got, want, name="out", rtol=rtol, atol=atol, axes=AXES)


def test_scan_variable_BC(student, tol, scan_inputs):
    got, want, rtol, atol = check(student, tol, scan_inputs(batch=3, dim=6, N=5, L=17), ("D",))
    expect_close(got, want, name="out", rtol=rtol, atol=atol, axes=AXES)


def test_scan_grouped_BC(student, tol, scan_inputs):
    # B and C of shape (batch, G, N, L): channel d reads group d // (dim / G), so a scan that tiles the groups
    # (d % G) or ignores them differs.
    got, want, rtol, atol = check(student, tol, scan_inputs(dim=8, groups=4, bc="grouped"), ())
    expect_close(got, want, name="out", rtol=rtol, atol=atol, axes=AXES)


def test_scan_D_skip(student, tol, scan_inputs):
    got, want, rtol, atol = check(student, tol, scan_inputs(), ("D",))
    expect_close(got, want, name="out", rtol=rtol, atol=atol, axes=AXES)


def test_scan_z_gate(student, tol, scan_inputs):
    got, want, rtol, atol = check(student, tol, scan_inputs(), ("D", "z"))
    expect_close(got, want, name="out", rtol=rtol, atol=atol, axes=AXES)


def test_scan_delta_bias_softplus(student, tol, scan_inputs):
    # Short and gently decaying, so that a skipped softplus (negative deltas: growth) stays finite and nameable.
    got, want, rtol, atol = check(student, tol, scan_inputs(L=8, a_max=1.0), ("delta_bias",), delta_softplus=True)
    expect_close(got, want, name="out", rtol=rtol, atol=atol, axes=AXES)


def test_scan_last_state(student, tol, scan_inputs):
    x = scan_inputs()
    got, want, rtol, atol = check(student, tol, x, ("D", "delta_bias"), delta_softplus=True, return_last_state=True)
    if not isinstance(got, tuple | list) or len(got) != 2:
        raise AssertionError("with return_last_state=True the function should return (out, last_state)")
    expect_tensor(got[1], name="last_state", shape=(2, 8, 4), dtype=torch.float32)
    expect_close(got[1], want[1], name="last_state", rtol=rtol, atol=atol, axes=("batch", "dim", "N"))
    expect_close(got[0], want[0], name="out", rtol=rtol, atol=atol, axes=AXES)


def test_scan_half_precision(student, tol, scan_inputs):
    got, want, rtol, atol = check(student, tol, scan_inputs(dtype=torch.bfloat16), ("D", "z"))
    expect_close(got, want, name="out (bf16)", rtol=rtol, atol=atol, axes=AXES)


def test_scan_edge_L1_N1(student, tol, scan_inputs):
    for shape in (dict(L=1), dict(N=1)):
        got, want, rtol, atol = check(student, tol, scan_inputs(**shape), ("D",))
        expect_close(got, want, name=f"out with {shape}", rtol=rtol, atol=atol, axes=AXES)


def test_scan_gradients(student, tol, scan_inputs, rng):
    # docs/facts.md, "Selective scan":
    # mamba-ssm tests du at 2x the output tolerance, ddelta at 5x rtol / 10x atol, the weights at 1e-3.
    x = scan_inputs(L=12, N=3)
    args = [x[k] for k in ("u", "delta", "A", "B", "C")]
    kwargs = dict(D=x["D"], z=x["z"], delta_bias=x["delta_bias"], delta_softplus=True)
    grad_output = torch.randn(x["u"].shape, generator=rng)
    got = student.gradients("selective_scan", *args, wrt=range(5), grad_output=grad_output, **kwargs)
    leaves = [a.clone().requires_grad_(True) for a in args]
    want = torch.autograd.grad(reference_scan(*leaves, **kwargs, backend="sequential"), leaves, grad_output)
    if not isinstance(got, tuple | list) or len(got) != 5:
        raise AssertionError("the gradient call should give one gradient per input")
    rtol, atol = tol(torch.float32)
    scale = {"u": (2, 2), "delta": (5, 10), "A": (None, None), "B": (None, None), "C": (None, None)}
    for name, g, w in zip(("u", "delta", "A", "B", "C"), got, want, strict=True):
        r, a = scale[name]
        expect_close(g, w, name=f"d out / d {name}", rtol=rtol * r if r else 1e-3, atol=atol * a if a else 1e-3)
