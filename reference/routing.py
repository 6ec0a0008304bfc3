"""Token-choice routers for Mixture-of-Experts layers: the trusted reference.

Three routers, each a pure function of the router logits (the gate's ``Linear(hidden -> E)`` output):

    top_k_routing        Mixtral (normalize=True) and Qwen2-MoE / Qwen3-MoE / OLMoE with norm_topk_prob False
    switch_routing       Switch Transformer top-1 with a per-expert capacity; overflow tokens are dropped
    deepseek_v3_routing  DeepSeek-V3 sigmoid scores, bias-corrected selection, group-limited top-k

Ties in top-k are unspecified in torch: compare against these with continuous random logits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from reference.common import compute_dtype


def _check_top_k(top_k: int, num_experts: int) -> None:
    if not 1 <= top_k <= num_experts:
        raise ValueError(f"top_k must be between 1 and the number of experts ({num_experts}), got {top_k}")


def top_k_routing(router_logits: torch.Tensor, top_k: int, normalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax-then-top-k routing (Mixtral; Qwen2-MoE when ``normalize=False``).

    Shapes: router_logits (..., E) -> weights (..., k) in router_logits' dtype, experts (..., k) int64, ordered by
    descending probability.
    Dtype policy: the softmax and the renormalisation run in fp32 (fp64 stays fp64); weights are cast back to the
    logits' dtype at the end, as Qwen2-MoE does (transformers 5.x's Mixtral router leaves them in fp32).

        p = softmax(logits) over all E experts
        experts = top-k indices of p;  w = p[experts]
        w = w / sum(w)            only when normalize (Mixtral; Qwen2-MoE's norm_topk_prob)
    """
    _check_top_k(top_k, router_logits.shape[-1])
    compute = compute_dtype(router_logits)
    probs = torch.softmax(router_logits.to(compute), dim=-1)
    weights, experts = torch.topk(probs, top_k, dim=-1)
    if normalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights.to(router_logits.dtype), experts


@dataclass(frozen=True)
class SwitchRouting:
    """What a Switch (top-1, capacity-limited) router decided for each token.

    experts  (..., T) int64   the argmax expert, also for dropped tokens
    weights  (..., T)         top-1 probability in the logits' dtype; 0 where dropped
    dropped  (..., T) bool    True where the token overflowed its expert's capacity (it passes through the residual)
    capacity int              tokens each expert accepts per group
    """

    experts: torch.Tensor
    weights: torch.Tensor
    dropped: torch.Tensor
    capacity: int


def switch_expert_capacity(tokens_per_group: int, num_experts: int, capacity_factor: float) -> int:
    """Per-expert capacity as the Switch Transformer code computes it (Mesh TensorFlow ``moe.py``):

        capacity = min(tokens, floor(tokens * capacity_factor / E))

    Floor, not ceil: ``int(...)`` in Mesh TensorFlow. (flaxformer rounds to nearest and adds a minimum of 4;
    transformers' SwitchTransformers takes a fixed ``expert_capacity`` from its config instead: pass
    ``expert_capacity=`` to ``switch_routing`` for that.)
    """
    return min(tokens_per_group, int((tokens_per_group * capacity_factor) / num_experts))


def switch_routing(
    router_logits: torch.Tensor,
    capacity_factor: float = 1.0,
    expert_capacity: int | None = None,
) -> SwitchRouting:
    """Switch Transformer top-1 routing with expert capacity.

    Shapes: router_logits (T, E) for one group of tokens, or (G, T, E) for G groups routed independently (as
    transformers' SwitchTransformersTop1Router treats each batch row). Every output is (T,) or (G, T).
    Dtype policy: softmax in fp32 (fp64 stays fp64), top-1 probability cast back to the logits' dtype.

        p = softmax(logits);  e_t = argmax_i p_{t,i};  w_t = p_{t,e_t}
        capacity C = switch_expert_capacity(T, E, capacity_factor), unless expert_capacity is given
        tokens claim their expert in token order; the (C+1)-th and later tokens sent to an expert are dropped, w_t = 0
    """
    if router_logits.dim() not in (2, 3):
        raise ValueError(f"router_logits must be (tokens, E) or (groups, tokens, E), got {tuple(router_logits.shape)}")
    num_tokens, num_experts = router_logits.shape[-2], router_logits.shape[-1]
    if expert_capacity is None:
        if capacity_factor <= 0:
            raise ValueError(f"capacity_factor must be positive, got {capacity_factor}")
        capacity = switch_expert_capacity(num_tokens, num_experts, capacity_factor)
    else:
        if expert_capacity < 0:
            raise ValueError(f"expert_capacity must be >= 0, got {expert_capacity}")
        capacity = int(expert_capacity)

    compute = compute_dtype(router_logits)
    probs = torch.softmax(router_logits.to(compute), dim=-1)
    top_prob, experts = probs.max(dim=-1)
    one_hot = torch.nn.functional.one_hot(experts, num_experts)
    # 1-based position of each token in its expert's queue, in token order.
    position = (torch.cumsum(one_hot, dim=-2) * one_hot).sum(dim=-1)
    dropped = position > capacity
    weights = torch.where(dropped, torch.zeros_like(top_prob), top_prob).to(router_logits.dtype)
    return SwitchRouting(experts=experts, weights=weights, dropped=dropped, capacity=capacity)


def deepseek_v3_routing(
    router_logits: torch.Tensor,
    top_k: int,
    n_group: int,
    topk_group: int,
    e_score_correction_bias: torch.Tensor | None,
    routed_scaling_factor: float = 2.5,
    norm_topk_prob: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepSeek-V3 router: sigmoid affinities, bias-corrected group-limited selection, unbiased weights.

    Shapes: router_logits (..., E); e_score_correction_bias (E,) or None (zeros). E must split into n_group equal
    groups of at least 2 experts. Returns weights (..., k) fp32 and experts (..., k) int64, ordered by descending
    selection score s + b.
    Dtype policy: everything in fp32 (fp64 stays fp64), and the weights stay in it, as in transformers and
    DeepSeek's own inference code, where the router runs in fp32.

        s = sigmoid(logits);  c = s + b                        (b: e_score_correction_bias, selection only)
        group score g_j = sum of the top-2 of c within group j; keep the topk_group best groups
        experts = top-k of c over experts in the kept groups
        w = s[experts];  w = w / (sum(w) + 1e-20) when norm_topk_prob;  w = w * routed_scaling_factor
    """
    num_experts = router_logits.shape[-1]
    _check_top_k(top_k, num_experts)
    if n_group < 1 or num_experts % n_group != 0:
        raise ValueError(f"{num_experts} experts do not split into n_group={n_group} equal groups")
    group_size = num_experts // n_group
    if group_size < 2:
        raise ValueError(f"each group needs at least 2 experts (group score is a top-2 sum), got {group_size}")
    if not 1 <= topk_group <= n_group:
        raise ValueError(f"topk_group must be between 1 and n_group ({n_group}), got {topk_group}")
    if top_k > topk_group * group_size:
        raise ValueError(f"top_k={top_k} exceeds the {topk_group * group_size} experts in the kept groups")

    compute = compute_dtype(router_logits)
    lead = router_logits.shape[:-1]
    logits = router_logits.to(compute).reshape(-1, num_experts)
    scores = torch.sigmoid(logits)
    choice = scores
    if e_score_correction_bias is not None:
        choice = scores + e_score_correction_bias.to(device=scores.device, dtype=compute)

    grouped = choice.view(-1, n_group, group_size)
    group_scores = grouped.topk(2, dim=-1).values.sum(dim=-1)  # (T, n_group)
    kept_groups = group_scores.topk(topk_group, dim=-1).indices
    group_mask = torch.zeros_like(group_scores, dtype=torch.bool).scatter_(1, kept_groups, True)
    expert_mask = group_mask.unsqueeze(-1).expand(-1, n_group, group_size).reshape(-1, num_experts)
    choice = choice.masked_fill(~expert_mask, -math.inf)

    experts = choice.topk(top_k, dim=-1).indices
    weights = scores.gather(1, experts)
    if norm_topk_prob:
        weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
    weights = weights * routed_scaling_factor
    return weights.reshape(*lead, top_k), experts.reshape(*lead, top_k)
