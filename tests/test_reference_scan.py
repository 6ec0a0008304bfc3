"""The selective scan and its decode step, proven against independent sources and against each other."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from reference import _cpu_scan, scan
from reference.scan import resolve_backend, selective_scan, selective_state_update

F64 = torch.float64


def make_inputs(batch=2, dim=4, L=7, N=3, bc="variable", groups=2, dtype=F64, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype)

    B = {"fixed": lambda: r(dim, N), "variable": lambda: r(batch, N, L), "grouped": lambda: r(batch, groups, N, L)}
    return dict(
        u=r(batch, dim, L),
        delta=r(batch, dim, L) * 0.5,
        A=-torch.rand(dim, N, generator=g, dtype=dtype) * 2 - 0.1,
        B=B[bc](),
        C=B[bc](),
        D=r(dim),
        z=r(batch, dim, L),
        delta_bias=r(dim) * 0.1,
    )


def test_known_answer_one_channel_two_steps():
    # x1 = d1 B u1; x2 = exp(d2 A) x1 + d2 B u2; y = C x; out = y + D u (hand-computed).
    u = torch.tensor([[[1.0, 2.0]]], dtype=F64)
    delta = torch.tensor([[[0.5, 0.25]]], dtype=F64)
    A, B, C, D = (torch.tensor(v, dtype=F64) for v in ([[-1.0]], [[2.0]], [[3.0]], [0.5]))
    x1 = 0.5 * 2.0 * 1.0
    x2 = math.exp(-0.25) * x1 + 0.25 * 2.0 * 2.0
    expected = torch.tensor([[[3 * x1 + 0.5, 3 * x2 + 1.0]]], dtype=F64)
    for backend in ("sequential", "chunked"):
        out, last = selective_scan(u, delta, A, B, C, D, return_last_state=True, backend=backend)
        torch.testing.assert_close(out, expected)
        torch.testing.assert_close(last, torch.tensor([[[x2]]], dtype=F64))


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 2), dim=st.sampled_from([2, 4, 6]), L=st.integers(1, 40), N=st.integers(1, 5),
    bc=st.sampled_from(["fixed", "variable", "grouped"]), chunk=st.integers(1, 17),
    use_d=st.booleans(), use_z=st.booleans(), use_bias=st.booleans(), softplus=st.booleans(),
    seed=st.integers(0, 2**16), compiled=st.sampled_from([False, "rows", "channels"]),
)
def test_chunked_equals_sequential(batch, dim, L, N, bc, chunk, use_d, use_z, use_bias, softplus, seed, compiled):
    # compiled: the fused numba kernel (the CPU default) in either layout, one row per (batch, channel) or blocks of
    # channels sharing a B/C group; False: the torch chunk loop (CUDA, or numba missing).

    x = make_inputs(batch, dim, L, N, bc, groups=2, seed=seed)
    kw = dict(D=x["D"] if use_d else None, z=x["z"] if use_z else None,
              delta_bias=x["delta_bias"] if use_bias else None, delta_softplus=softplus)
    args = (x["u"], x["delta"], x["A"], x["B"], x["C"])
    ref_out, ref_last = scan._scan_sequential(*args, **kw)
    out, last = scan._scan_chunked(*args, **kw, chunk_size=chunk, compiled=bool(compiled),
                                   cpu_kernel=compiled or None)
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(last, ref_last, rtol=1e-10, atol=1e-10)


@settings(max_examples=30, deadline=None)
@given(L=st.integers(1, 12), bc=st.sampled_from(["variable", "grouped"]), softplus=st.booleans(),
       seed=st.integers(0, 2**16))
def test_state_update_steps_reproduce_the_scan(L, bc, softplus, seed):
    x = make_inputs(2, 4, L, 3, bc, groups=2, seed=seed)
    out, last = selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"],
                               softplus, return_last_state=True, backend="sequential")
    state = torch.zeros(2, 4, 3, dtype=F64)
    steps = []
    for l in range(L):
        steps.append(selective_state_update(state, x["u"][..., l], x["delta"][..., l], x["A"], x["B"][..., l],
                                            x["C"][..., l], x["D"], x["z"][..., l], x["delta_bias"], softplus))
    torch.testing.assert_close(torch.stack(steps, -1), out)
    torch.testing.assert_close(state, last)


def test_grouped_BC_uses_group_of_channel():
    # Channel c reads group c // (dim / G): expanding the groups by hand gives per-channel B/C, which must agree
    # with a per-channel loop over one-channel scans.
    x = make_inputs(1, 4, 5, 2, "grouped", groups=2)
    out = selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], backend="sequential")
    for c in range(4):
        g = c // 2
        one = selective_scan(x["u"][:, c:c + 1], x["delta"][:, c:c + 1], x["A"][c:c + 1],
                             x["B"][:, g], x["C"][:, g], backend="sequential")
        torch.testing.assert_close(out[:, c:c + 1], one)


def test_delta_bias_is_added_before_softplus():
    x = make_inputs(1, 2, 4, 2, "variable")
    bias = torch.full((2,), 0.7, dtype=F64)
    out = selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], delta_bias=bias, delta_softplus=True)
    manual = selective_scan(x["u"], F.softplus(x["delta"] + 0.7), x["A"], x["B"], x["C"])
    wrong = selective_scan(x["u"], F.softplus(x["delta"]) + 0.7, x["A"], x["B"], x["C"])
    torch.testing.assert_close(out, manual)
    assert not torch.allclose(out, wrong)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_dtype_policy(dtype):
    x = make_inputs(2, 4, 9, 3, "variable", dtype=torch.float32)
    u = x["u"].to(dtype)
    for backend in ("sequential", "chunked"):
        out, last = selective_scan(u, x["delta"].to(dtype), x["A"], x["B"].to(dtype), x["C"].to(dtype), x["D"],
                                   return_last_state=True, backend=backend)
        assert out.dtype == dtype and last.dtype == torch.float32
    out64, last64 = selective_scan(x["u"].double(), x["delta"].double(), x["A"].double(), x["B"].double(),
                                   x["C"].double(), return_last_state=True)
    assert out64.dtype == F64 and last64.dtype == F64


def test_half_precision_within_mamba_ssm_tolerances():
    # docs/facts.md, "Selective scan":
    # bf16 rtol 3e-2 / atol 5e-2 against the fp32 reference of the same (rounded) inputs.
    x = make_inputs(2, 8, 64, 16, "variable", dtype=torch.float32)
    args16 = [x[k].to(torch.bfloat16) for k in ("u", "delta", "A", "B", "C")]
    ref = selective_scan(*[a.float() for a in args16], backend="sequential")
    out = selective_scan(*args16, backend="chunked")
    torch.testing.assert_close(out.float(), ref, rtol=3e-2, atol=5e-2)


@pytest.mark.parametrize("backend", ["sequential", "chunked"])
def test_gradcheck_fp64(backend):
    x = make_inputs(1, 2, 5, 2, "variable")
    names = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
    inputs = tuple(x[k].clone().requires_grad_(True) for k in names)

    def f(u, delta, A, B, C, D, z, bias):
        return selective_scan(u, delta, A, B, C, D, z, bias, True, True, backend=backend)

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6)


def test_auto_backend_on_cpu_is_chunked():
    assert resolve_backend("auto", torch.zeros(1, 1, 1)) == "chunked"
    with pytest.raises(ValueError, match="unknown backend"):
        selective_scan(*(make_inputs()[k] for k in ("u", "delta", "A", "B", "C")), backend="fast")


def test_matches_transformers_mamba_mixer_block():
    """Our scan inside a transformers MambaMixer's own projections reproduces the block's output (fp32)."""
    from transformers import MambaConfig
    from transformers.models.mamba.modeling_mamba import MambaMixer

    torch.manual_seed(0)
    config = MambaConfig(hidden_size=32, state_size=8, conv_kernel=4, expand=2, num_hidden_layers=1)
    mixer = MambaMixer(config, layer_idx=0).eval()
    with torch.no_grad():  # an untrained dt_proj gives near-identical channels: spread them to make the test bite
        mixer.dt_proj.bias.normal_(0, 1)
        mixer.D.normal_()
        h = torch.randn(2, 11, 32)
        expected = mixer(h)

        proj = mixer.in_proj(h).transpose(1, 2)
        x, gate = proj.chunk(2, dim=1)
        L = x.shape[-1]
        x = F.silu(mixer.conv1d(x)[..., :L])
        dt, B, C = torch.split(mixer.x_proj(x.transpose(1, 2)), [mixer.time_step_rank, 8, 8], dim=-1)
        delta = mixer.dt_proj.weight @ dt.transpose(1, 2)
        A = -torch.exp(mixer.A_log.float())
        for backend in ("sequential", "chunked"):
            y = selective_scan(x, delta, A, B.transpose(1, 2), C.transpose(1, 2), mixer.D.float(), gate,
                               mixer.dt_proj.bias.float(), True, backend=backend)
            torch.testing.assert_close(mixer.out_proj(y.transpose(1, 2)), expected, rtol=1e-4, atol=1e-5)


def test_matches_transformers_torch_selective_scan_function():
    from transformers.models.mamba.modeling_mamba import mamba_selective_scan

    x = make_inputs(2, 6, 13, 4, "variable", dtype=torch.float32, seed=3)
    ours, last = selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"],
                                True, True)
    theirs, their_last = mamba_selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"],
                                              x["delta_bias"], True, True)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(last, their_last, rtol=1e-5, atol=1e-5)


def test_cpu_chunked_backend_runs_the_compiled_kernel():
    # numba is a dependency: the default CPU path must be the fused kernel, not the slower torch loop.
    assert _cpu_scan.available()
    x = make_inputs(2, 4, 300, 3, "grouped", groups=2, dtype=torch.float32)
    args = (x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"], True)
    fused = selective_scan(*args, return_last_state=True, backend="chunked")
    oracle = selective_scan(*args, return_last_state=True, backend="sequential")
    for got, want in zip(fused, oracle, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_cpu_kernel_plan_uses_channel_blocks_only_where_channels_share_B_and_C():
    # group counts as _bc_layout gives them: variable 1, grouped G, fixed d (every channel its own)
    assert _cpu_scan.plan(2, 256, 1, 1) == ("channels", 64)
    assert _cpu_scan.plan(2, 256, 256, 1) == ("rows", 1)  # fixed B: every channel has its own
    assert _cpu_scan.plan(2, 256, 8, 1) == ("channels", 32)  # 8 groups of 32 channels
    assert _cpu_scan.plan(2, 24, 6, 1)[0] == "rows"  # blocks of 4: too narrow
    assert _cpu_scan.plan(2, 24, 6, 1, kernel="channels") == ("channels", 4)
    with pytest.raises(ValueError, match="unknown CPU kernel"):
        _cpu_scan.plan(2, 24, 1, 1, kernel="diagonal")
    assert _cpu_scan._bc_layout(torch.zeros(256, 16), 256).shape[1] == 256  # fixed: one group per channel
    assert _cpu_scan._bc_layout(torch.zeros(2, 16, 8), 256).shape[1] == 1
    assert _cpu_scan._bc_layout(torch.zeros(2, 8, 16, 8), 256).shape[1] == 8


@pytest.mark.parametrize("kernel", ["rows", "channels"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_chunked_decays_match_the_oracle_at_the_extremes(dtype, kernel):
    # The chunked backend's decays exp(delta * A) must be the oracle's, including underflow to 0, overflow to inf
    # and NaN/inf propagation (a guard for any faster exp in the CPU kernel). One channel per exponent z = delta * A:
    # with u = (1, 0), B = C = 1 and delta = 1, the output at position 1 is exp(z).
    z = [0.0, -1e-3, -0.5, 0.7, -5.0, -30.0, -80.0, -87.0, -300.0, -700.0, -1e4, 50.0, 88.0, 700.0, 1e4,
         float("nan"), float("inf"), float("-inf")]
    d = len(z)
    A = torch.tensor(z, dtype=dtype)[:, None]
    u = torch.tensor([1.0, 0.0], dtype=dtype).expand(1, d, 2).contiguous()
    delta = torch.ones(1, d, 2, dtype=dtype)
    ones = torch.ones(1, 1, 2, dtype=dtype)  # variable B = C = 1: every channel shares them
    fused, _ = scan._scan_chunked(u, delta, A, ones, ones, None, None, None, False, cpu_kernel=kernel)
    oracle = selective_scan(u, delta, A, ones, ones, backend="sequential")
    tiny = torch.finfo(dtype).tiny  # subnormal decays may flush to 0
    torch.testing.assert_close(fused, oracle, rtol=8 * torch.finfo(dtype).eps, atol=tiny, equal_nan=True)
    assert torch.equal(fused.isnan(), oracle.isnan()) and torch.equal(fused.isinf(), oracle.isinf())
