"""The two rules every reference kernel shares, each written once.

Compute dtype: the maths runs in fp32 whatever the inputs' dtype (bf16, fp16, fp32), as mamba-ssm's reference and
transformers' routers do (docs/facts.md, "Selective scan" and "Routers"); fp64 inputs stay fp64, so the reference can
serve as the oracle of a gradcheck.

B/C layout: a Mamba-1 scan takes B and C in three forms (docs/facts.md, "Selective scan"):
    fixed      (d, N)          the same at every position, one row per channel
    variable   (b, N, L)       one per position, shared by every channel
    grouped    (b, G, N, L)    one per position and group; channel c uses group c // (d // G)
``bc_groups`` maps all three onto one layout, (b | 1, groups, N, L | 1), so the kernels index a single form.
"""

from __future__ import annotations

import torch


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """fp64 inputs are computed in fp64, everything else in fp32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def bc_groups(M: torch.Tensor, dim: int) -> torch.Tensor:
    """B or C as (b | 1, groups, N, L | 1), a view where possible: fixed (d, N) -> (1, d, N, 1) (one group per
    channel); variable (b, N, L) -> (b, 1, N, L) (one group for all); grouped (b, G, N, L) as it is.

    A decode step's B/C has no L axis ((b, N) or (b, G, N)): pass ``M.unsqueeze(-1)``. Raises ValueError when the
    ``dim`` channels do not divide into the groups."""
    if M.dim() == 2:
        if M.shape[0] != dim:
            raise ValueError(f"a fixed B/C must be (dim, N) = ({dim}, N); got {tuple(M.shape)}")
        return M[None, :, :, None]
    if M.dim() == 3:
        return M.unsqueeze(1)
    if M.dim() != 4:
        raise ValueError(f"B/C must be (d, N), (b, N, L) or (b, G, N, L); got {tuple(M.shape)}")
    if dim % M.shape[1]:
        raise ValueError(f"dim {dim} is not divisible by the number of B/C groups {M.shape[1]}")
    return M


def bc_per_channel(M: torch.Tensor, dim: int) -> torch.Tensor:
    """``bc_groups`` with the groups expanded to channels where they differ: (b | 1, 1 | d, N, L | 1). A single
    group stays one (it broadcasts); fixed and grouped forms become one row per channel."""
    groups = bc_groups(M, dim)
    G = groups.shape[1]
    return groups if G in (1, dim) else groups.repeat_interleave(dim // G, dim=1)
