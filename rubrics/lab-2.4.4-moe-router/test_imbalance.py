"""Hidden check for load_imbalance(counts) -> dict(cv, max_over_mean, entropy), as the lab defines it."""

from __future__ import annotations

import math

import torch

from autograder.checks.api import CheckFailed, expect_number


def expected(counts: torch.Tensor) -> dict[str, float]:
    c = counts.double()
    if c.dim() == 2:
        c = c.sum(0)
    mean = c.mean()
    q = c / c.sum()
    entropy = -sum(float(p) * math.log(float(p)) for p in q if p > 0)
    return {"cv": float(c.std(unbiased=False) / mean), "max_over_mean": float(c.max() / mean), "entropy": entropy}


def test_imbalance_metrics(student, rng):
    cases = [torch.randint(0, 50, (8,), generator=rng), torch.tensor([10, 10, 10, 10]),
             torch.tensor([0, 0, 12, 0]), torch.randint(0, 30, (3, 6), generator=rng)]
    for counts in cases:
        got = student.load_imbalance(counts)
        if not isinstance(got, dict):
            raise CheckFailed(f"load_imbalance should return a dict, got {type(got).__name__}")
        want = expected(counts)
        if set(got) != set(want):
            raise CheckFailed(f"load_imbalance should return the keys {sorted(want)}, got {sorted(got)}")
        for key, value in want.items():
            expect_number(got[key], value, name=f"{key} for counts {counts.tolist()}", rtol=1e-5, atol=1e-9)
