"""Wrong variants of lab 2.4.4's functions that are no diagnosable misconception: the mutation harness
(tests/test_mutation.py) proves every check fails at least one of these or a catalogued mistake."""

from __future__ import annotations

import torch

from autograder.checks.api import Misconception
from reference import load_balancing_loss, top_k_routing


def _first_experts(logits, top_k, normalize=True):
    weights, _ = top_k_routing(logits, top_k, normalize)
    return weights, torch.arange(top_k).expand(logits.shape[0], top_k)


def _uniform(logits, top_k, normalize=True):
    _, experts = top_k_routing(logits, top_k, normalize)
    return torch.full(experts.shape, 1.0 / top_k, dtype=logits.dtype), experts


MUTANTS = [
    Misconception("first k experts", "top_k_routing", "", _first_experts),
    Misconception("uniform weights", "top_k_routing", "", _uniform),
    Misconception("a constant", "load_balancing_loss", "", lambda gate_logits, num_experts, top_k, attention_mask=None:
                  torch.tensor(2.0)),
    Misconception("factor E missing", "load_balancing_loss", "",
                  lambda gate_logits, num_experts, top_k, attention_mask=None:
                  load_balancing_loss(gate_logits, num_experts, top_k, attention_mask) / num_experts),
    Misconception("zero", "router_z_loss", "", lambda router_logits: torch.tensor(0.0)),
    Misconception("constants", "load_imbalance", "", lambda counts: {"cv": 0.0, "max_over_mean": 1.0, "entropy": 0.0}),
]
