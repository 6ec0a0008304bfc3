"""The reference routers against transformers' own router modules and a crafted capacity example."""

from __future__ import annotations

import pytest
import torch
from transformers import DeepseekV3Config, MixtralConfig, Qwen2MoeConfig, SwitchTransformersConfig
from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3TopkRouter
from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock
from transformers.models.qwen2_moe.modeling_qwen2_moe import Qwen2MoeSparseMoeBlock
from transformers.models.switch_transformers.modeling_switch_transformers import SwitchTransformersTop1Router

from reference.routing import (
    SwitchRouting,
    deepseek_v3_routing,
    switch_expert_capacity,
    switch_routing,
    top_k_routing,
)

HIDDEN = 16


def _hidden(tokens: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(tokens, HIDDEN, generator=torch.Generator().manual_seed(seed)).to(dtype)


def _randomise(module: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))


def _sorted_by_expert(weights: torch.Tensor, experts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    order = experts.argsort(dim=-1)
    return weights.gather(-1, order), experts.gather(-1, order)


@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_top_k_routing_matches_mixtral_sparse_moe_block_gate(top_k: int) -> None:
    config = MixtralConfig(hidden_size=HIDDEN, intermediate_size=32, num_local_experts=4, num_experts_per_tok=top_k)
    block = MixtralSparseMoeBlock(config)
    _randomise(block, seed=top_k)
    hidden = _hidden(24, seed=10 + top_k)
    logits, hf_weights, hf_experts = block.gate(hidden)

    weights, experts = top_k_routing(logits, top_k, normalize=True)

    torch.testing.assert_close(experts, hf_experts)
    torch.testing.assert_close(weights, hf_weights)
    torch.testing.assert_close(weights.sum(-1), torch.ones(24))


@pytest.mark.parametrize("norm_topk_prob", [False, True])
def test_top_k_routing_matches_qwen2_moe_sparse_moe_block_gate(norm_topk_prob: bool) -> None:
    config = Qwen2MoeConfig(
        hidden_size=HIDDEN,
        moe_intermediate_size=8,
        shared_expert_intermediate_size=16,
        num_experts=4,
        num_experts_per_tok=2,
        norm_topk_prob=norm_topk_prob,
    )
    block = Qwen2MoeSparseMoeBlock(config)
    _randomise(block, seed=3)
    logits, hf_weights, hf_experts = block.gate(_hidden(20, seed=4))

    weights, experts = top_k_routing(logits, 2, normalize=norm_topk_prob)

    torch.testing.assert_close(experts, hf_experts)
    torch.testing.assert_close(weights, hf_weights)
    if not norm_topk_prob:
        assert (weights.sum(-1) < 1).all()  # unnormalised: the k probabilities of 4 experts sum below 1


def test_top_k_routing_bf16_casts_weights_back_like_qwen2_moe() -> None:
    config = Qwen2MoeConfig(hidden_size=HIDDEN, num_experts=4, num_experts_per_tok=2, norm_topk_prob=True)
    block = Qwen2MoeSparseMoeBlock(config).to(torch.bfloat16)
    _randomise(block, seed=5)
    logits, hf_weights, hf_experts = block.gate(_hidden(20, seed=6, dtype=torch.bfloat16))

    weights, experts = top_k_routing(logits, 2, normalize=True)

    assert weights.dtype == torch.bfloat16
    torch.testing.assert_close(experts, hf_experts)
    torch.testing.assert_close(weights, hf_weights, rtol=0, atol=0)


def test_top_k_routing_keeps_leading_shape_and_rejects_bad_k() -> None:
    logits = torch.randn(2, 5, 4)
    weights, experts = top_k_routing(logits, 2)
    assert weights.shape == experts.shape == (2, 5, 2)
    with pytest.raises(ValueError, match="top_k"):
        top_k_routing(logits, 5)


def test_switch_routing_drops_overflow_tokens_in_token_order() -> None:
    big = 5.0
    # 6 tokens, 3 experts; argmax: 0, 0, 1, 0, 1, 2. capacity_factor 1.0 -> capacity floor(6/3) = 2.
    logits = torch.zeros(6, 3)
    for token, expert in enumerate([0, 0, 1, 0, 1, 2]):
        logits[token, expert] = big

    routing = switch_routing(logits, capacity_factor=1.0)

    assert isinstance(routing, SwitchRouting)
    assert routing.capacity == 2
    assert routing.experts.tolist() == [0, 0, 1, 0, 1, 2]
    assert routing.dropped.tolist() == [False, False, False, True, False, False]
    top_prob = torch.exp(torch.tensor(big)) / (torch.exp(torch.tensor(big)) + 2)
    expected = torch.full((6,), top_prob.item())
    expected[3] = 0.0
    torch.testing.assert_close(routing.weights, expected)

    # A smaller factor halves the capacity: the second token sent to experts 0 and 1 is dropped too.
    tight = switch_routing(logits, capacity_factor=0.5)
    assert tight.capacity == 1
    assert tight.dropped.tolist() == [False, True, False, True, True, False]
    assert (tight.weights[tight.dropped] == 0).all()


def test_switch_expert_capacity_floors_like_mesh_tensorflow() -> None:
    assert switch_expert_capacity(10, 4, 1.0) == 2  # 2.5 -> 2
    assert switch_expert_capacity(10, 4, 1.25) == 3  # 3.125 -> 3
    assert switch_expert_capacity(8, 4, 4.0) == 8  # capped at the group size


@pytest.mark.parametrize("expert_capacity", [1, 2, 3])
def test_switch_routing_matches_switch_transformers_top1_router(expert_capacity: int) -> None:
    config = SwitchTransformersConfig(
        d_model=HIDDEN, num_experts=4, expert_capacity=expert_capacity, router_jitter_noise=0.0
    )
    router = SwitchTransformersTop1Router(config).eval()
    _randomise(router, seed=expert_capacity)
    hidden = torch.randn(3, 10, HIDDEN, generator=torch.Generator().manual_seed(7))
    dispatch, hf_prob, logits = router(hidden)

    routing = switch_routing(logits, expert_capacity=expert_capacity)

    kept = dispatch.sum(-1).bool()
    assert kept.any() and (~kept).any()  # the example exercises both outcomes
    assert routing.dropped.tolist() == (~kept).tolist()
    torch.testing.assert_close(routing.experts[kept], dispatch.argmax(-1)[kept])
    torch.testing.assert_close(routing.weights, hf_prob.squeeze(-1) * kept)


def _deepseek_config(**overrides: object) -> DeepseekV3Config:
    kwargs: dict[str, object] = dict(
        hidden_size=HIDDEN,
        n_routed_experts=8,
        num_experts_per_tok=3,
        n_group=4,
        topk_group=2,
        routed_scaling_factor=2.5,
        norm_topk_prob=True,
    )
    kwargs.update(overrides)
    return DeepseekV3Config(**kwargs)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"norm_topk_prob": False},
        {"n_group": 2, "topk_group": 1, "num_experts_per_tok": 2},
        {"n_group": 1, "topk_group": 1, "num_experts_per_tok": 4, "routed_scaling_factor": 1.0},
    ],
)
def test_deepseek_v3_routing_matches_transformers_topk_router(overrides: dict[str, object]) -> None:
    config = _deepseek_config(**overrides)
    router = DeepseekV3TopkRouter(config)
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        router.weight.copy_(torch.randn(router.weight.shape, generator=gen))
        # A bias large enough to change which experts win, so a reference that ignores it fails.
        router.e_score_correction_bias.copy_(torch.randn(config.n_routed_experts, generator=gen) * 0.3)
    logits, hf_weights, hf_experts = router(_hidden(40, seed=12))

    weights, experts = deepseek_v3_routing(
        logits,
        top_k=config.num_experts_per_tok,
        n_group=config.n_group,
        topk_group=config.topk_group,
        e_score_correction_bias=router.e_score_correction_bias,
        routed_scaling_factor=config.routed_scaling_factor,
        norm_topk_prob=config.norm_topk_prob,
    )

    # transformers selects with sorted=False: compare as sets, ordered by expert index.
    w, e = _sorted_by_expert(weights, experts)
    hf_w, hf_e = _sorted_by_expert(hf_weights, hf_experts)
    torch.testing.assert_close(e, hf_e)
    torch.testing.assert_close(w, hf_w)


def test_deepseek_v3_bias_changes_selection_but_not_weights_formula() -> None:
    logits = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    bias = torch.zeros(8)
    bias[7] = 10.0  # expert 7 always wins selection
    weights, experts = deepseek_v3_routing(logits, 2, 4, 2, bias, routed_scaling_factor=1.0)
    assert (experts == 7).any(dim=-1).all()
    scores = torch.sigmoid(logits).gather(1, experts)
    torch.testing.assert_close(weights, scores / scores.sum(-1, keepdim=True))
    _, unbiased_e = deepseek_v3_routing(logits, 2, 4, 2, None, routed_scaling_factor=1.0)
    assert not torch.equal(unbiased_e, experts)


def test_deepseek_v3_routing_rejects_inconsistent_groups() -> None:
    logits = torch.randn(4, 8)
    with pytest.raises(ValueError, match="groups"):
        deepseek_v3_routing(logits, 2, 3, 1, None)
    with pytest.raises(ValueError, match="top_k"):
        deepseek_v3_routing(logits, 5, 4, 2, None)
