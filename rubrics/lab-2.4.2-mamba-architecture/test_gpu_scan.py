"""GPU checks (a GPU course only, rubric gpu_checks): the student's scan and decode step run on CUDA tensors in the
sandbox, fp32 and bf16, and are compared with mamba-ssm's CUDA kernels, the reference the course names, at the
tolerances mamba-ssm's own tests use (rubric tolerances). On a grader with CUDA, a mamba-ssm that does not import is
the grader's error, reported as such, never a skip that would hand out or withhold points silently."""

from __future__ import annotations

import torch

from autograder.checks.api import expect_close, expect_tensor

AXES = ("batch", "dim", "L")


def kernels():
    if not torch.cuda.is_available():
        raise RuntimeError("a GPU check ran on a grader without CUDA: grade GPU courses on the GPU box")
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn  # an ImportError is the real error
    from mamba_ssm.ops.triton.selective_state_update import selective_state_update

    return selective_scan_fn, selective_state_update


def inputs(rng, dtype, batch=2, dim=16, L=64, N=8, groups=None):
    """Made on CPU from the submission's generator: the student's copy crosses to the sandbox's GPU, the kernel's
    goes to this process's GPU."""
    bc = (batch, groups, N, L) if groups else (batch, N, L)
    return {
        "u": torch.randn(batch, dim, L, generator=rng).to(dtype),
        "delta": (0.5 * torch.rand(batch, dim, L, generator=rng)).to(dtype),
        "A": -torch.exp(torch.rand(dim, N, generator=rng)),
        "B": torch.randn(*bc, generator=rng).to(dtype),
        "C": torch.randn(*bc, generator=rng).to(dtype),
        "D": torch.randn(dim, generator=rng),
        "z": torch.randn(batch, dim, L, generator=rng).to(dtype),
        "delta_bias": 0.5 * torch.randn(dim, generator=rng) - 0.5,
    }


def compare_scan(student, tol, x, name):
    scan_fn, _ = kernels()
    order = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
    got = student.selective_scan(*(x[k] for k in order[:5]), D=x["D"], z=x["z"], delta_bias=x["delta_bias"],
                                 delta_softplus=True, return_last_state=True)
    out_k, last_k = scan_fn(*(x[k].cuda() for k in order), True, True)
    if not isinstance(got, tuple | list) or len(got) != 2:
        raise AssertionError("with return_last_state=True the function should return (out, last_state)")
    rtol, atol = tol(x["u"].dtype)
    out = expect_tensor(got[0], name=f"out ({name})", shape=tuple(x["u"].shape), dtype=x["u"].dtype)
    expect_close(out.float(), out_k.float().cpu(), name=f"out ({name}) vs mamba-ssm", rtol=rtol, atol=atol,
                 axes=AXES)
    expect_close(torch.as_tensor(got[1]).float(), last_k.float().cpu(), name=f"last_state ({name}) vs mamba-ssm",
                 rtol=rtol, atol=atol, axes=("batch", "dim", "N"))


def test_gpu_scan_fp32_matches_kernel(student, tol, rng):
    compare_scan(student, tol, inputs(rng, torch.float32), "fp32 on CUDA")


def test_gpu_scan_bf16_matches_kernel(student, tol, rng):
    compare_scan(student, tol, inputs(rng, torch.bfloat16), "bf16 on CUDA")


def test_gpu_scan_grouped_matches_kernel(student, tol, rng):
    compare_scan(student, tol, inputs(rng, torch.float32, groups=2), "grouped B/C, fp32 on CUDA")


def test_gpu_state_update_matches_kernel(student, tol, rng):
    _, update_k = kernels()
    x = inputs(rng, torch.float32, L=1)
    state = torch.randn(2, 16, 8, generator=rng)
    step = (x["u"][..., 0], x["delta"][..., 0], x["A"], x["B"][..., 0], x["C"][..., 0])
    got = student.selective_state_update(state.clone(), *step, D=x["D"], z=x["z"][..., 0], dt_bias=x["delta_bias"],
                                         dt_softplus=True)
    state_k = state.cuda()
    want = update_k(state_k, *(t.cuda() for t in step), D=x["D"].cuda(), z=x["z"][..., 0].cuda(),
                    dt_bias=x["delta_bias"].cuda(), dt_softplus=True)
    rtol, atol = tol(torch.float32)
    expect_close(torch.as_tensor(got).float(), want.float().cpu(), name="out (fp32 on CUDA) vs mamba-ssm",
                 rtol=rtol, atol=atol, axes=("batch", "dim"))
