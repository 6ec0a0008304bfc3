"""The torch reference backends against mamba-ssm's CUDA kernels, at the tolerances mamba-ssm's own tests use.

Needs a CUDA device and `make gpu` (mamba-ssm, causal-conv1d built for this GPU): skipped without CUDA, with the
reason. On a machine with CUDA a mamba-ssm that does not import fails these tests (the import error is the message):
the reference kernels are not optional where they can run.
"""

from __future__ import annotations

import pytest
import torch

from reference.scan import mamba_ssm_available, resolve_backend, selective_scan, selective_state_update

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on the GPU box)"),
]


@pytest.fixture(autouse=True, scope="module")
def _mamba_ssm_imports():
    if not mamba_ssm_available():
        import mamba_ssm.ops.selective_scan_interface  # noqa: F401  (raises the real import error)

# docs/facts.md, "Selective scan": mamba-ssm's test tolerances for the scan's output and last_state.
TOL = {torch.float32: (6e-4, 2e-3), torch.float16: (3e-3, 5e-3), torch.bfloat16: (3e-2, 5e-2)}


def inputs(dtype, bc, batch=2, dim=64, L=512, N=16, groups=2):
    g = torch.Generator(device="cuda").manual_seed(0)

    def r(*s, dt=dtype):
        return torch.randn(*s, generator=g, device="cuda", dtype=dt)

    shape = {"fixed": (dim, N), "variable": (batch, N, L), "grouped": (batch, groups, N, L)}[bc]
    wdt = torch.float32 if bc == "fixed" else dtype
    return dict(u=r(batch, dim, L), delta=(0.5 * r(batch, dim, L)), A=-0.5 * torch.rand(dim, N, device="cuda"),
                B=r(*shape, dt=wdt), C=r(*shape, dt=wdt), D=r(dim, dt=torch.float32), z=r(batch, dim, L),
                delta_bias=0.1 * r(dim, dt=torch.float32))


def test_auto_backend_is_mamba_ssm_on_cuda():
    assert resolve_backend("auto", torch.zeros(1, 1, 1, device="cuda")) == "mamba_ssm"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("bc", ["variable", "grouped"])
@pytest.mark.parametrize("backend", ["sequential", "chunked"])
def test_torch_backends_match_mamba_ssm_kernel(dtype, bc, backend):
    x = inputs(dtype, bc)
    args = (x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"], True, True)
    kernel_out, kernel_last = selective_scan(*args, backend="mamba_ssm")
    out, last = selective_scan(*args, backend=backend)
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(out, kernel_out, rtol=rtol, atol=atol)
    torch.testing.assert_close(last, kernel_last.float(), rtol=rtol, atol=atol)


def test_state_update_matches_mamba_ssm_kernel():
    from mamba_ssm.ops.triton.selective_state_update import selective_state_update as kernel_update

    x = inputs(torch.float32, "variable", L=1)
    state = torch.randn(2, 64, 16, device="cuda")
    state_k = state.clone()
    args = (x["u"][..., 0], x["delta"][..., 0], x["A"], x["B"][..., 0], x["C"][..., 0], x["D"], x["z"][..., 0],
            x["delta_bias"], True)
    ours = selective_state_update(state, *args)
    theirs = kernel_update(state_k, *args)
    torch.testing.assert_close(ours, theirs, rtol=6e-4, atol=2e-3)
    torch.testing.assert_close(state, state_k, rtol=6e-4, atol=2e-3)


# Mamba-2 SSD (rtol, atol): the tolerances vLLM's tests of mamba_chunk_scan_combined against ssd_minimal_discrete
# use (tests/kernels/mamba/test_mamba_ssm_ssd.py: fp32 atol 8e-3 rtol 5e-3, bf16 5e-2 both).
SSD_TOL = {torch.float32: (5e-3, 8e-3), torch.bfloat16: (5e-2, 5e-2)}


def ssd_inputs(dtype, batch=2, L=200, heads=8, head_dim=32, groups=2, N=16):
    g = torch.Generator(device="cuda").manual_seed(1)

    def r(*s, dt=dtype):
        return torch.randn(*s, generator=g, device="cuda", dtype=dt)

    return dict(x=r(batch, L, heads, head_dim), dt=r(batch, L, heads, dt=torch.float32) - 2,
                A=-torch.exp(torch.rand(heads, generator=g, device="cuda")), B=r(batch, L, groups, N),
                C=r(batch, L, groups, N), D=r(heads, dt=torch.float32), z=r(batch, L, heads, head_dim),
                dt_bias=0.1 * r(heads, dt=torch.float32))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_ssd_reference_matches_mamba_chunk_scan_combined(dtype):
    from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined

    from reference.ssd import ssd_chunk_scan, ssd_sequential

    x = ssd_inputs(dtype)
    kw = dict(D=x["D"], z=x["z"], dt_bias=x["dt_bias"], dt_softplus=True)
    theirs, theirs_last = mamba_chunk_scan_combined(x["x"], x["dt"], x["A"], x["B"], x["C"], 64, **kw,
                                                    return_final_states=True)
    rtol, atol = SSD_TOL[dtype]
    for ours_fn in (ssd_chunk_scan, ssd_sequential):
        extra = {"chunk_size": 64} if ours_fn is ssd_chunk_scan else {}
        ours, ours_last = ours_fn(x["x"], x["dt"], x["A"], x["B"], x["C"], **extra, **kw, return_final_states=True)
        torch.testing.assert_close(ours.float(), theirs.float(), rtol=rtol, atol=atol)
        torch.testing.assert_close(ours_last.float(), theirs_last.float(), rtol=rtol, atol=atol)
