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


def draw(rng, low, high):
    return int(torch.randint(low, high + 1, (1,), generator=rng))


def test_counts_stacked_layers(student, rng):
    layers, tokens, experts = draw(rng, 2, 4), draw(rng, 24, 64), draw(rng, 6, 10)
    k = draw(rng, 3, experts - 2)  # k >= 3: "top_k ignored (2)" fails on every seed
    check(student, torch.randn(layers, tokens, experts, generator=rng) * 2, k,
          f"({layers} layers, {tokens} tokens, {experts} experts), top-{k}")


def test_counts_tuple_of_layers(student, rng):
    # k >= 3: a function that ignores k and takes 2 (or 1) fails on every seed, not on those that drew k = 3 or more
    n, batch, seq, experts = draw(rng, 2, 5), draw(rng, 1, 3), draw(rng, 6, 16), draw(rng, 5, 8)
    k = draw(rng, 3, experts - 1)
    layers = tuple(torch.randn(batch, seq, experts, generator=rng) * 2 for _ in range(n))
    check(student, layers, k, f"a tuple of {n} layers of (batch {batch}, seq {seq}, {experts} experts), top-{k}")


def test_counts_top1(student, rng):
    # k = 1, and the same logits at a k > 1 drawn from the seed: a function that keeps only the first choice
    # passes the first call, not the second. Two layers at least: with one, pooling the layers changes nothing, and
    # "layers pooled" passed this check on some seeds only.
    layers, tokens, experts = draw(rng, 2, 3), draw(rng, 20, 48), draw(rng, 4, 10)
    logits = torch.randn(layers, tokens, experts, generator=rng) * 2
    check(student, logits, 1, f"({layers} layers, {tokens} tokens, {experts} experts), top-1")
    k = draw(rng, 2, experts - 1)
    check(student, logits, k, f"the same logits, top-{k}")


def test_counts_single_layer_and_expert(student, rng):
    # k > 1: with a k of 1 drawn, "top-1 counted instead of top-k" passed this check on some seeds only.
    # (and k >= 3, as above: with experts = 3 the only k drawn was 2, which "top_k ignored (2)" matched)
    tokens, experts = draw(rng, 10, 40), draw(rng, 5, 8)
    k = draw(rng, 3, experts - 1)
    check(student, torch.randn(tokens, experts, generator=rng), k, f"one ({tokens} tokens, {experts} experts) layer, "
                                                                     f"top-{k}")
    check(student, torch.randn(2, draw(rng, 3, 12), 1, generator=rng), 1, "a single expert, top-1")
