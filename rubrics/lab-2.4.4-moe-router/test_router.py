"""Hidden checks for top_k_routing: expert choice compared as sets (torch leaves the order of ties open).

A wrong choice of experts keeps the tokens each expert received, the student's and the reference's, for the
feedback page's expert-load bars."""

from __future__ import annotations

import torch

from autograder.checks.api import CheckFailed, expect_close, expect_tensor
from reference import top_k_routing as reference_routing


def canonical(weights, experts):
    """Sort each token's (expert, weight) pairs by expert index so any order of the k slots compares equal."""
    order = torch.argsort(experts, dim=-1)
    return torch.gather(weights, -1, order), torch.gather(experts, -1, order)


def route(student, logits, k, normalize):
    got = student.top_k_routing(logits, k, normalize=normalize)
    if not isinstance(got, tuple | list) or len(got) != 2:
        raise CheckFailed("top_k_routing should return a pair (weights, experts)")
    weights = expect_tensor(got[0], name="weights", shape=(logits.shape[0], k), dtype=logits.dtype)
    experts = expect_tensor(got[1], name="experts", shape=(logits.shape[0], k))
    if experts.dtype not in (torch.int64, torch.int32):
        raise CheckFailed(f"experts should be an integer tensor, got {experts.dtype}")
    num_experts = logits.shape[-1]
    if experts.numel() and (int(experts.min()) < 0 or int(experts.max()) >= num_experts):
        raise CheckFailed(f"experts holds indices outside 0..{num_experts - 1} (there are {num_experts} experts)")
    return canonical(weights, experts.long()), canonical(*reference_routing(logits, k, normalize))


def expert_load(experts, num_experts):
    """Tokens sent to each expert (every slot of every token counts once)."""
    return torch.bincount(experts.reshape(-1), minlength=num_experts).tolist()


def test_routing_selects_top_k(student, rng):
    logits = torch.randn(64, 8, generator=rng) * 2
    (_, experts), (_, want) = route(student, logits, 2, True)
    wrong = int((experts != want).any(-1).sum())
    if wrong:
        raise CheckFailed(f"{wrong} of 64 tokens were sent to other experts than their 2 most probable ones",
                          {"expert_load": expert_load(experts, logits.shape[-1]),
                           "expert_load_reference": expert_load(want, logits.shape[-1])})


def test_routing_normalized_weights(student, tol, rng):
    logits = torch.randn(64, 8, generator=rng) * 2
    (weights, _), (want, _) = route(student, logits, 2, True)
    expect_close(weights, want, name="weights", rtol=1e-5, atol=1e-6, axes=("token", "slot"))


def test_routing_unnormalized_weights(student, rng):
    logits = torch.randn(64, 60, generator=rng) * 2
    (weights, _), (want, _) = route(student, logits, 4, False)
    expect_close(weights, want, name="weights", rtol=1e-5, atol=1e-6, axes=("token", "slot"))


def test_routing_half_precision(student, tol, rng):
    logits = (torch.randn(64, 8, generator=rng) * 4).to(torch.bfloat16)
    (weights, _), (want, _) = route(student, logits, 2, True)
    rtol, atol = tol(torch.bfloat16)
    expect_close(weights, want, name="weights (bf16)", rtol=rtol, atol=atol, axes=("token", "slot"))


def test_routing_edge_cases(student, rng):
    logits = torch.randn(16, 8, generator=rng)
    (weights, experts), (want_w, want_e) = route(student, logits, 1, True)
    expect_close(weights, want_w, name="weights with k=1", rtol=1e-5, atol=1e-6)
    if not torch.equal(experts, want_e):
        raise CheckFailed("with k=1 each token must go to its single most probable expert")
    one = torch.randn(5, 1, generator=rng)
    (weights, _), (want_w, _) = route(student, one, 1, False)
    expect_close(weights, want_w, name="weights with a single expert", rtol=1e-5, atol=1e-6)
