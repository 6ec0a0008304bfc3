"""Mamba-2 state-space duality (SSD): the chunked scan of ``mamba_chunk_scan_combined``, as trusted reference.

Per head h (scalar decay per head, the Mamba-2 restriction that makes the chunked matmul form exact):

    h_t = exp(dt_t * A) h_{t-1} + dt_t * x_t B_t^T          state (p, n) per head
    y_t = C_t h_t + D x_t ;  y *= silu(z) if z is given

Shapes (b batch, l length, h heads, p head dim, g groups, n state size):
    x, z     (b, l, h, p)          dt (b, l, h)         A (h,)
    B, C     (b, l, g, n); head h uses group h // (heads / g)
    D        (h,) or (h, p)        dt_bias (h,)         initial_states (b, h, p, n)
    out      (b, l, h, p) in x's dtype; final_states (b, h, p, n) in the compute dtype

Dtype policy: computed in fp32 (fp64 for fp64 x); dt += dt_bias before softplus, then clamped to dt_limit.

The chunked form: inside a chunk the output is a masked (causal, decayed) attention-like matmul
C L B^T x with L[i, j] = exp(sum_{j < k <= i} dt_k A); states are handed from chunk to chunk.
``ssd_sequential`` is the step-by-step oracle the chunked form is tested against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from reference.common import compute_dtype

OptTensor = Tensor | None


def _prepare(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, dt_bias: OptTensor, dt_softplus: bool,
             dt_limit: tuple[float, float] | None) -> tuple[torch.dtype, Tensor, Tensor, Tensor, Tensor, Tensor]:
    cd = compute_dtype(x)
    heads, groups = x.shape[2], B.shape[2]
    if heads % groups:
        raise ValueError(f"{heads} heads are not divisible into {groups} B/C groups")
    dt = dt.to(cd)
    if dt_bias is not None:
        dt = dt + dt_bias.to(cd)
    if dt_softplus:
        dt = F.softplus(dt)
    if dt_limit is not None:
        dt = dt.clamp(min=dt_limit[0], max=dt_limit[1])
    rep = heads // groups
    B = B.to(cd).repeat_interleave(rep, dim=2)  # (b, l, h, n)
    C = C.to(cd).repeat_interleave(rep, dim=2)
    return cd, x.to(cd), dt, A.to(cd), B, C


def _finish(y: Tensor, x: Tensor, D: OptTensor, z: OptTensor, dtype: torch.dtype) -> Tensor:
    if D is not None:
        D = D.to(y.dtype)
        y = y + x * (D[:, None] if D.dim() == 1 else D)
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y.to(dtype)


def ssd_sequential(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: OptTensor = None, z: OptTensor = None,
                   dt_bias: OptTensor = None, dt_softplus: bool = False, dt_limit: tuple[float, float] | None = None,
                   initial_states: OptTensor = None, return_final_states: bool = False
                   ) -> Tensor | tuple[Tensor, Tensor]:
    """Step-by-step oracle of the SSD recurrence (module docstring for shapes)."""
    dtype = x.dtype
    cd, xc, dt, A, B, C = _prepare(x, dt, A, B, C, dt_bias, dt_softplus, dt_limit)
    b, l, h, p = xc.shape
    state = (xc.new_zeros(b, h, p, B.shape[-1]) if initial_states is None else initial_states.to(cd).clone())
    ys = []
    for t in range(l):
        decay = torch.exp(dt[:, t] * A)  # (b, h)
        state = state * decay[..., None, None] + (dt[:, t, :, None] * xc[:, t])[..., None] * B[:, t, :, None, :]
        ys.append(torch.einsum("bhpn,bhn->bhp", state, C[:, t]))
    y = _finish(torch.stack(ys, dim=1), xc, D, z, dtype)
    return (y, state) if return_final_states else y


def _segsum(a: Tensor) -> Tensor:
    """a (..., T) -> (..., T, T) with [i, j] = sum_{j < k <= i} a_k for j <= i, -inf above the diagonal."""
    T = a.shape[-1]
    cs = torch.cumsum(a, dim=-1)
    seg = cs[..., :, None] - cs[..., None, :]
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool, device=a.device))
    return seg.masked_fill(~mask, float("-inf"))


def ssd_chunk_scan(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk_size: int = 256, D: OptTensor = None,
                   z: OptTensor = None, dt_bias: OptTensor = None, dt_softplus: bool = False,
                   dt_limit: tuple[float, float] | None = None, initial_states: OptTensor = None,
                   return_final_states: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Mamba-2 SSD in its chunked (matmul) form, ``mamba_chunk_scan_combined`` semantics.

    Returns out (b, l, h, p) in x's dtype, and the final states (b, h, p, n) if ``return_final_states``.
    """
    dtype = x.dtype
    cd, xc, dt, A, B, C = _prepare(x, dt, A, B, C, dt_bias, dt_softplus, dt_limit)
    b, l, h, p = xc.shape
    n = B.shape[-1]
    T = chunk_size
    pad = (-l) % T
    if pad:  # zero dt on padding: no decay, no input, outputs dropped
        xc_p, dt_p = F.pad(xc, (0, 0, 0, 0, 0, pad)), F.pad(dt, (0, 0, 0, pad))
        B_p, C_p = F.pad(B, (0, 0, 0, 0, 0, pad)), F.pad(C, (0, 0, 0, 0, 0, pad))
    else:
        xc_p, dt_p, B_p, C_p = xc, dt, B, C
    c = (l + pad) // T
    X = xc_p.reshape(b, c, T, h, p) * dt_p.reshape(b, c, T, h, 1)  # dt-scaled input
    Bc = B_p.reshape(b, c, T, h, n)
    Cc = C_p.reshape(b, c, T, h, n)
    a = (dt_p * A).reshape(b, c, T, h).permute(0, 3, 1, 2)  # (b, h, c, T) log-decays
    a_cum = torch.cumsum(a, dim=-1)

    # 1. inside each chunk: y = (C B^T * L) X
    Lmat = torch.exp(_segsum(a))  # (b, h, c, T, T)
    y_diag = torch.einsum("bclhn,bcshn,bhcls,bcshp->bclhp", Cc, Bc, Lmat, X)
    # 2. the state each chunk leaves behind (from a zero start)
    decay_states = torch.exp(a_cum[..., -1:] - a_cum)  # (b, h, c, T)
    states = torch.einsum("bclhn,bhcl,bclhp->bchpn", Bc, decay_states, X)
    # 3. hand the states across chunks
    init = xc.new_zeros(b, 1, h, p, n) if initial_states is None else initial_states.to(cd)[:, None]
    states = torch.cat([init, states], dim=1)  # (b, c+1, h, p, n)
    chunk_decay = torch.exp(_segsum(F.pad(a_cum[..., -1], (1, 0))))  # (b, h, c+1, c+1)
    states = torch.einsum("bhzc,bchpn->bzhpn", chunk_decay, states)
    states, final = states[:, :-1], states[:, -1]
    # 4. the contribution of the state entering each chunk
    y_off = torch.einsum("bclhn,bchpn,bhcl->bclhp", Cc, states, torch.exp(a_cum))
    y = (y_diag + y_off).reshape(b, c * T, h, p)[:, :l]
    y = _finish(y, xc, D, z, dtype)
    return (y, final) if return_final_states else y
