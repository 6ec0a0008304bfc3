"""The chunked scan's CPU kernel: the recurrence, read-out, skip (D) and gate (silu(z)) fused in one compiled loop.

Per chunk of T positions, torch computes the decays exp(delta * A) for all T positions at once (vectorised exp, in
place, in a cache-sized buffer). A compiled kernel then walks the chunk: x_l = deltaA_l * x_{l-1} + delta_l u_l B_l
and y_l = C_l . x_l, with no tensor written per position (one small torch op per position cost more in dispatch
than in arithmetic). The same loop adds D u and multiplies by silu(z) (computed by torch) as it writes each output,
so the (b, d, L) tensors are not walked again, and it writes delta * A of the next chunk into each decay slot it has
just read (torch's broadcast multiply with an inner size of N cost as much as its exp).

Two layouts of the same loop (``plan`` picks one):
    channels  blocks of up to 64 channels that share their B/C group (variable or grouped B/C, the Mamba case), one
              block per thread; per position and state index the inner loop runs across the block's channels with
              B_l[n] and C_l[n] as scalars. At L = 8192 it takes ~0.87x the time of the rows layout: numba cannot
              mark arrays noalias, so the rows layout pays address arithmetic and runtime alias checks (~40
              instructions) per position before its 16-wide body; here that cost is shared by the whole block.
    rows      one (batch, channel) row per thread, the N-vector of the state updated in place: any B/C, including
              fixed (d, N) B/C where every channel has its own.

numba is an optional speed-up: where it does not import, ``available()`` is False and the torch chunk loop runs.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import types
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from reference.common import bc_groups

CHUNK = 128  # positions per chunk: the decay buffer stays in the cache at the labs' sizes
# numba's fallback threading layer (workqueue, where neither TBB nor GNU OpenMP is present) aborts the process on
# concurrent parallel launches from two threads; the scan is a trusted-side helper, so serialise its calls.
_LAUNCH = threading.Lock()
# The kernels' parallel loop: numba.prange once compiled (_kernels binds it), a plain range if read as Python.
prange = range


def _rows(decay: Any, delta: Any, u: Any, A: Any, B: Any, C: Any, D: Any, gate: Any,  # pragma: no cover
          start: int, n: int, n_next: int, has_d: bool, has_gate: bool, zero: Any, y: Any, x: Any) -> None:
    """decay (b, d, T, N): exp(delta*A) of this chunk, overwritten as it is read with delta*A of the next chunk's
    first n_next positions; delta, u, gate (b, d, L): gate = silu(z); A (d, N); B, C (Bb, G, L|1, N); D (d,);
    y (b, d, L): the finished output (y + D u) * silu(z); x (b, d, N): the state, carried in and out.
    Rows (b, d) are independent: one per thread."""
    batch, dim = u.shape[0], u.shape[1]
    N = x.shape[2]
    for row in prange(batch * dim):
        b = row // dim
        d = row - b * dim
        bb = b if B.shape[0] > 1 else 0
        cb = b if C.shape[0] > 1 else 0
        bg = d // (dim // B.shape[1])
        cg = d // (dim // C.shape[1])
        xs = x[b, d]
        for t in range(n):
            pos = start + t
            ul = u[b, d, pos]
            dul = delta[b, d, pos] * ul
            Bv = B[bb, bg, pos if B.shape[2] > 1 else 0]
            Cv = C[cb, cg, pos if C.shape[2] > 1 else 0]
            dec = decay[b, d, t]
            acc = zero
            for k in range(N):
                v = dec[k] * xs[k] + dul * Bv[k]
                xs[k] = v
                acc += v * Cv[k]
            if t < n_next:  # the next chunk's delta*A, into the slot just read (torch exps it, vectorised)
                dn = delta[b, d, pos + n]
                for k in range(N):
                    dec[k] = dn * A[d, k]
            if has_d:
                acc = acc + ul * D[d]
            if has_gate:
                acc = acc * gate[b, d, pos]
            y[b, d, pos] = acc


def _channels(decay: Any, delta: Any, u: Any, AT: Any, B: Any, C: Any, D: Any, gate: Any,  # pragma: no cover
              start: int, n: int, n_next: int, has_d: bool, has_gate: bool, zero: Any, y: Any, x: Any) -> None:
    """The same scan with channels as the vector axis, for blocks of channels that share their B/C group.
    decay (b, nblk, T, N, blk): exp(delta*A) of this chunk, overwritten as it is read with delta*A of the next
    chunk; AT (nblk, N, blk): A by block, transposed; x (b, nblk, N, blk): the state; delta, u, gate, y (b, d, L).
    One (batch, block) per thread; per position and state index the inner loop runs over the block's channels, with
    B_l[n] and C_l[n] as scalars, no horizontal sum and no per-position setup per channel."""
    batch, nblk, _, N, blk = decay.shape
    dim = nblk * blk
    for task in prange(batch * nblk):
        b = task // nblk
        i = task - b * nblk
        d0 = i * blk
        bb = b if B.shape[0] > 1 else 0
        cb = b if C.shape[0] > 1 else 0
        bg = d0 // (dim // B.shape[1])
        cg = d0 // (dim // C.shape[1])
        xs = x[b, i]
        ATb = AT[i]
        dul = np.empty(blk, dtype=x.dtype)
        uu = np.empty(blk, dtype=x.dtype)
        acc = np.empty(blk, dtype=x.dtype)
        dn = np.empty(blk, dtype=x.dtype)
        for t in range(n):
            pos = start + t
            for j in range(blk):
                uv = u[b, d0 + j, pos]
                dul[j] = delta[b, d0 + j, pos] * uv
                uu[j] = uv
                acc[j] = zero
            nxt = t < n_next
            if nxt:
                for j in range(blk):
                    dn[j] = delta[b, d0 + j, pos + n]
            Bv = B[bb, bg, pos if B.shape[2] > 1 else 0]
            Cv = C[cb, cg, pos if C.shape[2] > 1 else 0]
            dect = decay[b, i, t]
            for k in range(N):
                bk = Bv[k]
                ck = Cv[k]
                dec = dect[k]
                xk = xs[k]
                for j in range(blk):
                    v = dec[j] * xk[j] + dul[j] * bk
                    xk[j] = v
                    acc[j] += v * ck
                if nxt:  # the next chunk's delta*A, into the slots just read
                    ak = ATb[k]
                    for j in range(blk):
                        dec[j] = dn[j] * ak[j]
            for j in range(blk):
                r = acc[j]
                if has_d:
                    r = r + uu[j] * D[d0 + j]
                if has_gate:
                    r = r * gate[b, d0 + j, pos]
                y[b, d0 + j, pos] = r


@functools.cache
def _kernels() -> dict[str, Callable[..., Any]] | None:
    if os.environ.get("SPARKGRADE_NO_NUMBA"):
        return None
    try:
        import numba
    except ImportError:
        return None
    # reassoc lets the N-sum vectorise; no "nnan"/"ninf": NaN and inf must propagate as in the oracle.
    fastmath = {"reassoc", "contract"}
    kernels: dict[str, Callable[..., Any]] = {}
    for body in (_rows, _channels):
        fn = types.FunctionType(body.__code__, dict(body.__globals__, prange=numba.prange), body.__name__)
        try:
            kernels[body.__name__.lstrip("_")] = numba.njit(
                fn, cache=True, parallel=True, fastmath=fastmath, error_model="numpy", nogil=True)
        except RuntimeError:  # no writable cache location next to the package: compile per process instead
            kernels[body.__name__.lstrip("_")] = numba.njit(
                fn, parallel=True, fastmath=fastmath, error_model="numpy", nogil=True)
    return kernels


def available() -> bool:
    return _kernels() is not None


def plan(batch: int, dim: int, groups_b: int, groups_c: int, kernel: str | None = None) -> tuple[str, int]:
    """Which kernel scans these shapes, and its channel block, from the B and C group counts of ``_bc_layout``
    (variable 1, grouped G, fixed d: one group per channel): ("channels", blk) when blocks of at least 8 channels
    share their B and C groups, else ("rows", 1). ``kernel`` forces one ("channels" then takes the largest block the
    groups allow, down to 1)."""
    shared = math.gcd(dim // groups_b, dim // groups_c)  # channels per block that share both groups
    blocks = [k for k in range(min(64, shared), 0, -1) if shared % k == 0]
    if kernel == "rows":
        return "rows", 1
    if kernel == "channels":
        return "channels", blocks[0]
    if kernel is not None:
        raise ValueError(f"unknown CPU kernel {kernel!r}; choose rows or channels")
    threads = torch.get_num_threads()
    wide = [k for k in blocks if k >= 8]
    busy = [k for k in wide if batch * (dim // k) >= threads]  # enough blocks for every thread
    return ("channels", (busy or wide)[0]) if wide else ("rows", 1)


def _bc_layout(M: torch.Tensor, dim: int) -> torch.Tensor:
    """The kernels' view of B/C: fixed (d, N) -> (1, d, 1, N); variable (b, N, L) -> (b, 1, L, N); grouped
    (b, G, N, L) -> (b, G, L, N) (reference.common.bc_groups, positions before the state axis)."""
    return bc_groups(M, dim).transpose(2, 3).contiguous()


def scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
         D: torch.Tensor | None = None, z: torch.Tensor | None = None,
         chunk: int = CHUNK, kernel: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """out (b, d, L) = (C . x + D u) * silu(z), and the last state (b, d, N); u and delta already in the compute
    dtype, delta already biased and softplus-ed; D and z optional. CPU tensors only. ``kernel``: see ``plan``."""
    kernels = _kernels()
    assert kernels is not None, "numba is not available"
    batch, dim, L = u.shape
    N = A.shape[1]
    dtype = u.dtype
    Bk, Ck = _bc_layout(B.to(dtype), dim), _bc_layout(C.to(dtype), dim)
    name, blk = plan(batch, dim, Bk.shape[1], Ck.shape[1], kernel)
    D_ = u.new_empty(0) if D is None else D.to(dtype).contiguous()
    gate = u.new_empty(0, 0, 0) if z is None else F.silu(z.to(dtype)).contiguous()
    T = max(1, min(chunk, L))
    y = u.new_empty(batch, dim, L)
    zero = np.zeros(1, dtype=np.float64 if dtype == torch.float64 else np.float32)[0]
    delta = delta.contiguous()
    if name == "rows":
        decay = u.new_empty(batch, dim, T, N)
        x = u.new_zeros(batch, dim, N)
        A_k = A.contiguous()
        torch.mul(delta[:, :, :T, None], A_k[:, None, :], out=decay)  # the first chunk's; the kernel writes the rest
    else:  # by blocks of blk channels: decay (b, nblk, T, N, blk), A (nblk, N, blk), state (b, nblk, N, blk)
        nblk = dim // blk
        decay = u.new_empty(batch, nblk, T, N, blk)
        x = u.new_zeros(batch, nblk, N, blk)
        A_k = A.reshape(nblk, blk, N).transpose(1, 2).contiguous()
        first = delta[:, :, :T].reshape(batch, nblk, blk, T).permute(0, 1, 3, 2)[:, :, :, None, :]
        torch.mul(first, A_k[None, :, None], out=decay)
    arrays = [t.detach().numpy() for t in (decay, delta, u.contiguous(), A_k, Bk, Ck, D_, gate)]
    y_np, x_np = y.numpy(), x.numpy()
    step = kernels[name]
    for start in range(0, L, T):
        n = min(T, L - start)
        n_next = min(T, L - start - n)
        decay[:, :, :n].exp_()  # positions are dim 2 in both layouts
        with _LAUNCH:
            step(*arrays, start, n, n_next, D is not None, z is not None, zero, y_np, x_np)
    if name == "channels":
        x = x.transpose(2, 3).reshape(batch, dim, N)
    return y, x
