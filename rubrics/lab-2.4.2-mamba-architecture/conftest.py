"""Inputs for the scan checks: made here, outside the sandbox, from the submission's seeded generator."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def scan_inputs(rng):
    def make(batch=2, dim=8, L=33, N=4, bc="variable", groups=2, dtype=torch.float32, a_max=2.0):
        def r(*shape):
            return torch.randn(*shape, generator=rng).to(dtype)

        bc_shape = {"fixed": (dim, N), "variable": (batch, N, L), "grouped": (batch, groups, N, L)}[bc]
        return {
            "u": r(batch, dim, L),
            "delta": (0.5 * torch.rand(batch, dim, L, generator=rng)).to(dtype),
            "A": -torch.exp(torch.rand(dim, N, generator=rng) * a_max),  # fp32 as in Mamba (A = -exp(A_log))
            "B": r(*bc_shape) if bc != "fixed" else torch.randn(*bc_shape, generator=rng),
            "C": r(*bc_shape) if bc != "fixed" else torch.randn(*bc_shape, generator=rng),
            "D": torch.randn(dim, generator=rng),
            "z": r(batch, dim, L),
            "delta_bias": 0.5 * torch.randn(dim, generator=rng) - 0.5,
        }

    return make
