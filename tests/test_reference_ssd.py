"""Mamba-2 SSD: the chunked matmul form against the step-by-step oracle and against transformers' torch path."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.ssd import ssd_chunk_scan, ssd_sequential


def make(b=2, l=37, h=4, p=8, g=2, n=16, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)

    def r(*s):
        return torch.randn(*s, generator=gen, dtype=dtype)

    return dict(x=r(b, l, h, p), dt=r(b, l, h), A=-torch.rand(h, generator=gen, dtype=dtype) * 3 - 0.1,
                B=r(b, l, g, n), C=r(b, l, g, n), D=r(h), z=r(b, l, h, p), dt_bias=r(h) * 0.1,
                init=r(b, h, p, n))


@settings(max_examples=25, deadline=None)
@given(l=st.integers(1, 50), chunk=st.integers(1, 20), g=st.sampled_from([1, 2, 4]), use_init=st.booleans(),
       d_per_channel=st.booleans(), seed=st.integers(0, 2**16))
def test_chunked_equals_sequential(l, chunk, g, use_init, d_per_channel, seed):
    t = make(l=l, g=g, seed=seed)
    D = t["D"][:, None].expand(4, 8).contiguous() if d_per_channel else t["D"]
    kw = dict(D=D, z=t["z"], dt_bias=t["dt_bias"], dt_softplus=True,
              initial_states=t["init"] if use_init else None, return_final_states=True)
    y1, s1 = ssd_sequential(t["x"], t["dt"], t["A"], t["B"], t["C"], **kw)
    y2, s2 = ssd_chunk_scan(t["x"], t["dt"], t["A"], t["B"], t["C"], chunk, **kw)
    torch.testing.assert_close(y2, y1, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(s2, s1, rtol=1e-9, atol=1e-9)


def test_matches_transformers_mamba2_torch_path():
    from transformers.models.mamba2.modeling_mamba2 import mamba2_chunk_scan

    t = make(dtype=torch.float32, seed=1)
    for chunk in (8, 16, 64):
        ours, s_ours = ssd_chunk_scan(t["x"], t["dt"], t["A"], t["B"], t["C"], chunk, D=t["D"],
                                      dt_bias=t["dt_bias"], dt_softplus=True, return_final_states=True)
        theirs, s_theirs = mamba2_chunk_scan(t["x"], t["dt"], t["A"], t["B"], t["C"], chunk, D=t["D"],
                                             dt_bias=t["dt_bias"], dt_softplus=True, return_final_states=True)
        torch.testing.assert_close(ours, theirs.to(ours.dtype), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(s_ours, s_theirs.to(s_ours.dtype), rtol=1e-4, atol=1e-4)
