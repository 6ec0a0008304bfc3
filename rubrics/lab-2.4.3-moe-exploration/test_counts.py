"""Hidden checks for expert_activation_counts(router_logits, top_k) -> (layers, E) int64, against the reference
(top-k of the fp32 softmax; continuous random logits, so no ties)."""

from __future__ import annotations

import torch

from autograder.checks.api import CheckFailed, expect_equal
from reference import expert_activation_counts as reference_counts


def check(student, logits, top_k, name):
    got = student.expert_activation_counts(logits, top_k)
    want = reference_counts(logits, top_k)
    expect_equal(got, want, name=f"counts for {name}")
    if got.dtype != torch.int64:
        raise CheckFailed(f"counts should be int64, got {str(got.dtype).removeprefix('torch.')}")


def test_counts_stacked_layers(student, rng):
    check(student, torch.randn(3, 64, 8, generator=rng) * 2, 2, "(3 layers, 64 tokens, 8 experts), top-2")


def test_counts_tuple_of_layers(student, rng):
    layers = tuple(torch.randn(2, 12, 6, generator=rng) * 2 for _ in range(4))
    check(student, layers, 3, "a tuple of 4 layers of (batch 2, seq 12, 6 experts), top-3")


def test_counts_top1(student, rng):
    check(student, torch.randn(2, 40, 8, generator=rng) * 2, 1, "(2 layers, 40 tokens, 8 experts), top-1")


def test_counts_single_layer_and_expert(student, rng):
    check(student, torch.randn(30, 4, generator=rng), 2, "one (30 tokens, 4 experts) layer, top-2")
    check(student, torch.randn(2, 10, 1, generator=rng), 1, "a single expert, top-1")
