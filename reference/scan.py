"""Selective scan (Mamba-1 S6) and its one-step decode update: the trusted reference.

Semantics are mamba-ssm's ``selective_scan_ref`` / ``selective_state_update_ref`` (v2.3.x):

    delta = softplus(delta + delta_bias)            (bias first, then softplus, threshold 20)
    deltaA_l  = exp(delta_l * A)                     zero-order hold for A
    deltaBu_l = delta_l * B_l * u_l                  Euler for B (not ZOH)
    x_l = deltaA_l * x_{l-1} + deltaBu_l,  x_0 = 0
    y_l = sum_n C_l[n] * x_l[n];  out = y + D * u;  out *= silu(z)

Shapes (b batch, d dim, L length, N state size, G groups):
    u, delta, z        (b, d, L)
    A                  (d, N) real
    B, C               fixed (d, N) | variable (b, N, L) | grouped (b, G, N, L); channel c uses group c // (d // G)
    D, delta_bias      (d,)
    out                (b, d, L) in u's dtype;   last_state (b, d, N)

Dtype policy: everything is computed in fp32, or fp64 when u is fp64 (the oracle for gradcheck); last_state is in
that compute dtype; out is cast back to u's dtype.

Backends behind one API:
    sequential  the oracle: one step per position, exactly the equations above.
    chunked     chunk by chunk: the decays of a chunk's positions at once, then the recurrence and read-out fused
                in one compiled loop per (batch, channel) row (numba, on CPU), or a torch loop where numba is
                missing and on CUDA without mamba-ssm.
    mamba_ssm   mamba-ssm's CUDA kernel, when it imports and the inputs are on a CUDA device.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from reference import _cpu_scan
from reference.common import bc_per_channel, compute_dtype

OptTensor = Tensor | None

Backend = Literal["auto", "sequential", "chunked", "mamba_ssm"]

DEFAULT_CHUNK = 64


@functools.cache
def _mamba_ssm_fn() -> Callable[..., Any] | None:
    """mamba-ssm's CUDA selective scan, or None where it cannot import (always on a CPU-only machine)."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # ImportError, or its compiled extension failing without CUDA
        return None
    fn: Callable[..., Any] = selective_scan_fn
    return fn


def mamba_ssm_available() -> bool:
    return torch.cuda.is_available() and _mamba_ssm_fn() is not None


def resolve_backend(backend: Backend, u: Tensor) -> str:
    """The backend that ``backend='auto'`` picks for these inputs: mamba_ssm on CUDA when importable, else chunked."""
    if backend != "auto":
        return backend
    if u.is_cuda and mamba_ssm_available():
        return "mamba_ssm"
    return "chunked"


def _prepare(u: Tensor, delta: Tensor, A: Tensor, delta_bias: OptTensor, delta_softplus: bool
             ) -> tuple[torch.dtype, Tensor, Tensor, Tensor]:
    dt = compute_dtype(u)
    u_c = u.to(dt)
    delta_c = delta.to(dt)
    if delta_bias is not None:
        delta_c = delta_c + delta_bias.to(dt)[:, None]
    if delta_softplus:
        delta_c = F.softplus(delta_c)  # threshold 20, as mamba-ssm
    return dt, u_c, delta_c, A.to(dt)


def _finish(y: Tensor, u_c: Tensor, D: OptTensor, z: OptTensor, dtype_in: torch.dtype) -> Tensor:
    out = y if D is None else y + u_c * D.to(y.dtype)[:, None]
    if z is not None:
        out = out * F.silu(z.to(y.dtype))
    return out.to(dtype_in)


def _scan_sequential(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: OptTensor, z: OptTensor,
                     delta_bias: OptTensor, delta_softplus: bool) -> tuple[Tensor, Tensor]:
    dtype_in = u.dtype
    dt, u, delta, A = _prepare(u, delta, A, delta_bias, delta_softplus)
    batch, dim, L = u.shape
    B = bc_per_channel(B.to(dt), dim)  # (b|1, 1|d, N, L|1)
    C = bc_per_channel(C.to(dt), dim)
    x = u.new_zeros(batch, dim, A.shape[1])
    ys = []
    for l in range(L):
        d_l = delta[:, :, l, None]  # (b, d, 1)
        B_l = B[..., min(l, B.shape[-1] - 1)]  # (b|1, 1|d, N): a fixed B/C is the same at every position
        C_l = C[..., min(l, C.shape[-1] - 1)]
        x = torch.exp(d_l * A) * x + d_l * B_l * u[:, :, l, None]
        ys.append((x * C_l).sum(-1))
    y = torch.stack(ys, dim=-1)
    return _finish(y, u, D, z, dtype_in), x


def _time_major(M: Tensor) -> Tensor:
    """(b|1, 1|d, N, L|1) -> contiguous (L|1, b|1, 1|d, N); a fixed B/C's single position broadcasts over time."""
    return M.permute(3, 0, 1, 2).contiguous()


def _scan_chunked(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: OptTensor, z: OptTensor,
                  delta_bias: OptTensor, delta_softplus: bool, chunk_size: int | None = None, compiled: bool = True,
                  cpu_kernel: str | None = None) -> tuple[Tensor, Tensor]:
    """Chunk by chunk, time-major, in buffers sized to stay in cache.

    Inside a chunk of T positions everything but the recurrence is computed for all T positions at once: the
    discretisation deltaA = exp(delta * A) and deltaB*u, and the read-out y = C . x (one batched matmul). The
    recurrence itself is one fused multiply-add per position (x_l = deltaA_l * x_{l-1} + deltaBu_l, in place).
    On a CPU this beats a log-depth parallel scan: the work is memory-bound, and a chunk-parallel formulation
    (cumulative sums of log-decays) reads and writes the (b, d, L, N) tensors several more times.

    On CPU, where numba imports and ``compiled`` is left on, the recurrence and read-out run fused in one compiled
    loop instead (reference/_cpu_scan.py), D and the silu(z) gate included: same chunks, no torch op per
    position. ``chunk_size`` None is each path's default; ``cpu_kernel`` forces that loop's layout (tests).
    """
    dtype_in = u.dtype
    dt, u, delta, A = _prepare(u, delta, A, delta_bias, delta_softplus)
    if compiled and not u.is_cuda and _cpu_scan.available():  # the fused CPU kernel (numba), when it imports
        out, x = _cpu_scan.scan(u, delta, A, B, C, D, z, chunk=chunk_size or _cpu_scan.CHUNK, kernel=cpu_kernel)
        return out.to(dtype_in), x
    batch, dim, L = u.shape
    N = A.shape[1]
    fixed_c = C.dim() == 2
    B = _time_major(bc_per_channel(B.to(dt), dim))
    C = _time_major(bc_per_channel(C.to(dt), dim))
    delta_t = delta.permute(2, 0, 1).contiguous()  # (L, b, d)
    du_t = (delta * u).permute(2, 0, 1).contiguous()
    T = max(1, min(chunk_size or DEFAULT_CHUNK, L))
    decay = u.new_empty(T, batch, dim, N)
    states = u.new_empty(T, batch, dim, N)
    y = u.new_empty(L, batch, dim)
    x = u.new_zeros(batch, dim, N)
    for start in range(0, L, T):
        n = min(T, L - start)
        a, h = decay[:n], states[:n]
        torch.mul(delta_t[start : start + n, :, :, None], A, out=a).exp_()
        B_c = B if B.shape[0] == 1 else B[start : start + n]
        torch.mul(du_t[start : start + n, :, :, None], B_c, out=h)
        h[0].addcmul_(a[0], x)
        for t in range(1, n):
            h[t].addcmul_(a[t], h[t - 1])
        x = h[n - 1].clone()
        y_c = y[start : start + n]
        if fixed_c:  # (1, 1, d, N): the same at every position
            torch.sum(h * C, dim=-1, out=y_c)
        elif C.shape[2] == 1:  # variable: one C_l per (batch, position): a matrix-vector product per pair
            torch.bmm(h.view(n * batch, dim, N), C[start : start + n].view(n * batch, N, 1),
                      out=y_c.view(n * batch, dim, 1))
        else:  # grouped, expanded per channel
            torch.sum(h * C[start : start + n], dim=-1, out=y_c)
    return _finish(y.permute(1, 2, 0).contiguous(), u, D, z, dtype_in), x


def _scan_mamba_ssm(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: OptTensor, z: OptTensor,
                    delta_bias: OptTensor, delta_softplus: bool) -> tuple[Tensor, Tensor]:
    fn = _mamba_ssm_fn()
    if fn is None or not u.is_cuda:
        raise RuntimeError("backend 'mamba_ssm' needs mamba-ssm installed (pip install '.[gpu]') and CUDA inputs")
    out, last = fn(
        u, delta, A, B, C, D=None if D is None else D.float(), z=z,
        delta_bias=None if delta_bias is None else delta_bias.float(),
        delta_softplus=delta_softplus, return_last_state=True,
    )
    return out, last


_BACKENDS: dict[str, Callable[..., tuple[Tensor, Tensor]]] = {
    "sequential": _scan_sequential, "chunked": _scan_chunked, "mamba_ssm": _scan_mamba_ssm}


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    backend: Backend = "auto",
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Selective scan with mamba-ssm ``selective_scan_ref`` semantics (see the module docstring for shapes).

    Returns out (b, d, L) in u's dtype, and last_state (b, d, N) in the compute dtype if ``return_last_state``.
    ``backend='auto'`` picks mamba_ssm on CUDA where it imports, else chunked; ``resolve_backend`` says which.
    When gradients are needed the torch path is the sequential oracle (differentiable end to end).
    """
    if A.is_complex():
        raise NotImplementedError("complex A is not needed by the labs and not supported by the reference")
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(f"u and delta must both be (batch, dim, L); got {tuple(u.shape)} and {tuple(delta.shape)}")
    name = resolve_backend(backend, u)
    if name == "chunked" and torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (u, delta, A, B, C, D, z, delta_bias)
    ):
        name = "sequential"  # the chunked kernel writes into reused buffers; autograd goes through the oracle
    if name not in _BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of auto, {', '.join(_BACKENDS)}")
    out, last = _BACKENDS[name](u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    return (out, last) if return_last_state else out


def selective_state_update(
    state: torch.Tensor,
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
) -> torch.Tensor:
    """One decode step of the scan; updates ``state`` in place and returns out.

    state (b, d, N); x, dt, z (b, d); A (d, N); B, C (b, N) or grouped (b, G, N); D, dt_bias (d,).
    The step is computed in fp32 (fp64 for fp64 state), the new state is written back in state's dtype, and out
    is returned in x's dtype. Running it L times from a zero state reproduces ``selective_scan``.
    """
    cd = compute_dtype(state)
    dim = x.shape[1]
    d = dt.to(cd)
    if dt_bias is not None:
        d = d + dt_bias.to(cd)
    if dt_softplus:
        d = F.softplus(d)

    # (b, N) or grouped (b, G, N) -> (b, 1|d, N): the scan's layout rule for one position
    Bc, Cc = (bc_per_channel(M.to(cd).unsqueeze(-1), dim).squeeze(-1) for M in (B, C))
    dA = torch.exp(d[..., None] * A.to(cd))
    new_state = state.to(cd) * dA + (d * x.to(cd))[..., None] * Bc
    state.copy_(new_state.to(state.dtype))
    out = (new_state * Cc).sum(-1)
    if D is not None:
        out = out + x.to(cd) * D.to(cd)
    if z is not None:
        out = out * F.silu(z.to(cd))
    return out.to(x.dtype)
