"""reference.common: the compute-dtype rule and the one B/C layout every scan path reads."""

from __future__ import annotations

import pytest
import torch

from reference.common import bc_groups, bc_per_channel, compute_dtype
from reference.scan import selective_scan, selective_state_update


def test_compute_dtype_keeps_fp64_and_lifts_everything_else_to_fp32() -> None:
    assert compute_dtype(torch.zeros(1, dtype=torch.float64)) == torch.float64
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        assert compute_dtype(torch.zeros(1, dtype=dtype)) == torch.float32


def test_the_three_b_c_forms_map_onto_one_layout() -> None:
    assert bc_groups(torch.zeros(6, 4), 6).shape == (1, 6, 4, 1)  # fixed: a group per channel, one position
    assert bc_groups(torch.zeros(2, 4, 5), 6).shape == (2, 1, 4, 5)  # variable: one group for every channel
    assert bc_groups(torch.zeros(2, 3, 4, 5), 6).shape == (2, 3, 4, 5)  # grouped
    assert bc_per_channel(torch.zeros(2, 3, 4, 5), 6).shape == (2, 6, 4, 5)
    grouped = torch.arange(3.0)[None, :, None, None].expand(1, 3, 1, 1)
    assert bc_per_channel(grouped, 6).flatten().tolist() == [0, 0, 1, 1, 2, 2]  # channel c uses group c // (d // G)
    with pytest.raises(ValueError, match="not divisible"):
        bc_groups(torch.zeros(2, 4, 4, 5), 6)
    with pytest.raises(ValueError, match="fixed B/C"):
        bc_groups(torch.zeros(5, 4), 6)


@pytest.mark.parametrize("backend", ["sequential", "chunked"])
def test_the_same_b_and_c_in_any_form_give_the_same_scan(backend: str) -> None:
    g = torch.Generator().manual_seed(0)
    b, d, L, N = 2, 6, 7, 4
    u, delta = torch.randn(b, d, L, generator=g), torch.rand(b, d, L, generator=g)
    A = -torch.rand(d, N, generator=g)
    B_var, C_var = torch.randn(b, N, L, generator=g), torch.randn(b, N, L, generator=g)
    want = selective_scan(u, delta, A, B_var, C_var, backend=backend)
    one_group = selective_scan(u, delta, A, B_var[:, None], C_var[:, None], backend=backend)  # (b, 1, N, L)
    torch.testing.assert_close(one_group, want)
    B_fix, C_fix = torch.randn(d, N, generator=g), torch.randn(d, N, generator=g)
    fixed = selective_scan(u, delta, A, B_fix, C_fix, backend=backend)
    # the same values as d groups (one per channel), repeated at every position
    B_grp, C_grp = (M[None, :, :, None].expand(b, d, N, L) for M in (B_fix, C_fix))
    torch.testing.assert_close(fixed, selective_scan(u, delta, A, B_grp, C_grp, backend=backend))


def test_a_decode_step_reads_grouped_b_and_c_as_the_scan_does() -> None:
    g = torch.Generator().manual_seed(1)
    b, d, N, G = 2, 6, 4, 3
    x, dt = torch.randn(b, d, generator=g), torch.rand(b, d, generator=g)
    A = -torch.rand(d, N, generator=g)
    B, C = torch.randn(b, G, N, generator=g), torch.randn(b, G, N, generator=g)
    state = torch.zeros(b, d, N)
    out = selective_state_update(state, x, dt, A, B, C)
    want = selective_scan(x[..., None], dt[..., None], A, B[..., None], C[..., None], backend="sequential")[..., 0]
    torch.testing.assert_close(out, want)
