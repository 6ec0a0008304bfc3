"""Wrong variants of lab 2.4.3's functions that are no diagnosable misconception: the mutation harness
(tests/test_mutation.py) proves every check fails at least one of these or a catalogued mistake."""

from __future__ import annotations

from autograder.checks.api import Misconception
from reference import expert_activation_counts


def _int32(router_logits, top_k):
    return expert_activation_counts(router_logits, top_k).int()


MUTANTS = [
    Misconception("zeros", "expert_activation_counts", "",
                  lambda router_logits, top_k: expert_activation_counts(router_logits, top_k) * 0),
    Misconception("top_k ignored (2)", "expert_activation_counts", "",
                  lambda router_logits, top_k: expert_activation_counts(router_logits, 2)),
    Misconception("int32 counts", "expert_activation_counts", "", _int32),
]
