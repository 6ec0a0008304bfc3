"""Hidden checks for load_balancing_loss (transformers' load_balancing_loss_func) and router_z_loss (ST-MoE)."""

from __future__ import annotations

import torch

from autograder.checks.api import expect_number
from reference import load_balancing_loss as reference_lbl
from reference import router_z_loss as reference_z


def lbl(student, *args, **kwargs):
    got = student.load_balancing_loss(*args, **kwargs)
    want = float(reference_lbl(*args, **kwargs))
    return expect_number(got, want, name="loss", rtol=1e-4, atol=1e-6)


def test_lbl_single_layer(student, rng):
    lbl(student, torch.randn(40, 8, generator=rng) * 2, 8, 2)


def test_lbl_pooled_layers(student, rng):
    # Layers with very different routing: pooling and averaging per layer disagree clearly.
    layers = (torch.randn(30, 8, generator=rng) * 3, torch.randn(30, 8, generator=rng) * 0.3,
              torch.randn(30, 8, generator=rng) + torch.arange(8.0))
    lbl(student, layers, 8, 2)


def test_lbl_attention_mask(student, rng):
    batch, seq, E = 3, 10, 8
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[0, 6:] = 0
    mask[2, 3:] = 0
    layers = tuple(torch.randn(batch * seq, E, generator=rng) * 2 for _ in range(2))
    lbl(student, layers, E, 2, attention_mask=mask)


def test_lbl_all_but_one_masked(student, rng):
    mask = torch.zeros(2, 6, dtype=torch.long)
    mask[1, 2] = 1
    lbl(student, (torch.randn(12, 4, generator=rng) * 2,), 4, 2, attention_mask=mask)


def test_lbl_balanced_scale(student):
    # 8 tokens over 4 experts, top-2, every expert chosen equally often with equal mean probability: loss = k = 2.
    rows = []
    for t in range(8):
        row = torch.full((4,), -1.0)
        row[t % 4] = row[(t + 1) % 4] = 1.0
        rows.append(row)
    got = student.load_balancing_loss((torch.stack(rows),), 4, 2)
    expect_number(got, 2.0, name="loss for perfectly balanced top-2 routing", rtol=1e-5)


def test_zloss_value(student, rng):
    logits = torch.randn(50, 8, generator=rng) * 3
    expect_number(student.router_z_loss(logits), float(reference_z(logits)), name="z-loss", rtol=1e-4)


def test_zloss_large_logits(student, rng):
    logits = (torch.randn(50, 8, generator=rng) * 10 + 60).to(torch.bfloat16)
    # The inputs are exact bf16 numbers: an fp32 logsumexp reproduces the reference to ~1e-6, a bf16 one is off
    # by its rounding (about 0.4 %).
    expect_number(student.router_z_loss(logits), float(reference_z(logits)), name="z-loss for large bf16 logits",
                  rtol=1e-4)
