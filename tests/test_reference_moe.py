"""MoE counting: parameter counts against instantiated transformers models and published figures; expert
activation counts against transformers' routers."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    LlamaConfig,
    MixtralConfig,
    OlmoeConfig,
    PretrainedConfig,
    Qwen2MoeConfig,
    Qwen3MoeConfig,
)
from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock

from reference.moe import expert_activation_counts, moe_param_counts

TINY = dict(vocab_size=64, hidden_size=16, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)


def _instantiated_total(config: PretrainedConfig) -> int:
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


TINY_CONFIGS = {
    "mixtral-untied": MixtralConfig(
        **TINY, num_hidden_layers=2, intermediate_size=24, num_local_experts=4, num_experts_per_tok=2
    ),
    "mixtral-tied-head-dim": MixtralConfig(
        **TINY,
        num_hidden_layers=3,
        intermediate_size=20,
        num_local_experts=5,
        num_experts_per_tok=1,
        head_dim=8,
        tie_word_embeddings=True,
    ),
    "qwen2-moe-shared": Qwen2MoeConfig(
        **TINY,
        num_hidden_layers=2,
        intermediate_size=40,
        moe_intermediate_size=12,
        shared_expert_intermediate_size=24,
        num_experts=4,
        num_experts_per_tok=2,
    ),
    "qwen2-moe-tied-sparse-step-mlp-only": Qwen2MoeConfig(
        **TINY,
        num_hidden_layers=5,
        intermediate_size=40,
        moe_intermediate_size=12,
        shared_expert_intermediate_size=24,
        num_experts=6,
        num_experts_per_tok=3,
        decoder_sparse_step=2,
        mlp_only_layers=[3],
        tie_word_embeddings=True,
    ),
    "qwen2-moe-no-qkv-bias": Qwen2MoeConfig(
        **TINY,
        num_hidden_layers=2,
        moe_intermediate_size=12,
        shared_expert_intermediate_size=8,
        num_experts=4,
        num_experts_per_tok=1,
        qkv_bias=False,
    ),
    "qwen3-moe": Qwen3MoeConfig(
        **TINY,
        num_hidden_layers=3,
        intermediate_size=40,
        moe_intermediate_size=12,
        num_experts=4,
        num_experts_per_tok=2,
        mlp_only_layers=[0],
        head_dim=6,
        attention_bias=True,
    ),
    "olmoe": OlmoeConfig(
        **TINY, num_hidden_layers=2, intermediate_size=12, num_experts=4, num_experts_per_tok=2, pad_token_id=0
    ),
}


@pytest.mark.parametrize("name", list(TINY_CONFIGS))
def test_moe_param_total_equals_instantiated_model(name: str) -> None:
    config = TINY_CONFIGS[name]
    counts = moe_param_counts(config)
    assert counts["total"] == _instantiated_total(config)
    assert 0 < counts["active"] < counts["total"]


def test_moe_param_active_matches_hand_count_for_qwen2_moe() -> None:
    config = TINY_CONFIGS["qwen2-moe-shared"]
    v, h, hd = 64, 16, 4
    attention = h * 4 * hd + 2 * h * 2 * hd + 4 * hd * h + (4 * hd + 2 * 2 * hd)  # q, k, v, o + q/k/v biases
    norms = 2 * h
    router = 4 * h
    one_expert = 3 * h * 12
    shared = 3 * h * 24 + h  # shared expert + its sigmoid gate
    per_layer_active = attention + norms + router + 2 * one_expert + shared
    active = 2 * per_layer_active + 2 * v * h + h  # two layers, untied embeddings + lm_head, final norm
    assert moe_param_counts(config) == {"total": active + 2 * 2 * one_expert, "active": active}


def test_moe_param_counts_mixtral_8x7b_published_figures() -> None:
    config = MixtralConfig(
        num_hidden_layers=32,
        hidden_size=4096,
        intermediate_size=14336,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=32000,
        num_local_experts=8,
        num_experts_per_tok=2,
    )
    counts = moe_param_counts(config)  # from the config only: 46.7B parameters are never instantiated
    assert counts["total"] == 46_702_792_704
    assert round(counts["total"] / 1e9, 1) == 46.7
    assert round(counts["active"] / 1e9, 1) == 12.9


def test_moe_param_counts_qwen15_moe_a27b_and_olmoe_published_figures() -> None:
    qwen = moe_param_counts(
        Qwen2MoeConfig(
            vocab_size=151936,
            hidden_size=2048,
            num_hidden_layers=24,
            num_attention_heads=16,
            num_key_value_heads=16,
            num_experts=60,
            num_experts_per_tok=4,
            moe_intermediate_size=1408,
            shared_expert_intermediate_size=5632,
        )
    )
    assert round(qwen["total"] / 1e9, 1) == 14.3  # Qwen1.5-MoE-A2.7B: 14.3B total, 2.7B active
    assert round(qwen["active"] / 1e9, 1) == 2.7
    olmoe = moe_param_counts(OlmoeConfig(intermediate_size=1024))  # OLMoE-1B-7B: 6.9B total, 1.3B active
    assert round(olmoe["total"] / 1e9, 1) == 6.9
    assert round(olmoe["active"] / 1e9, 1) == 1.3


def test_moe_param_counts_rejects_dense_models_by_name() -> None:
    with pytest.raises(ValueError, match="llama"):
        moe_param_counts(LlamaConfig())


def test_expert_activation_counts_match_mixtral_router_choices() -> None:
    config = MixtralConfig(hidden_size=16, intermediate_size=8, num_local_experts=4, num_experts_per_tok=2)
    gen = torch.Generator().manual_seed(0)
    logits, chosen = [], []
    for _ in range(3):
        block = MixtralSparseMoeBlock(config)
        with torch.no_grad():
            block.gate.weight.copy_(torch.randn(block.gate.weight.shape, generator=gen))
        layer_logits, _, layer_experts = block.gate(torch.randn(25, 16, generator=gen))
        logits.append(layer_logits)
        chosen.append(layer_experts)
    expected = torch.stack([torch.bincount(e.reshape(-1), minlength=4) for e in chosen])

    counts = expert_activation_counts(tuple(logits), top_k=2)

    assert counts.dtype == torch.int64
    assert counts.shape == (3, 4)
    torch.testing.assert_close(counts, expected)
    assert (counts.sum(dim=1) == 25 * 2).all()
    torch.testing.assert_close(expert_activation_counts(torch.stack(logits), top_k=2), expected)


def test_expert_activation_counts_crafted() -> None:
    logits = torch.tensor([[5.0, 4.0, 0.0], [0.0, 5.0, 4.0], [4.0, 0.0, 5.0], [5.0, 0.0, 4.0]])
    assert expert_activation_counts([logits], top_k=1).tolist() == [[2, 1, 1]]
    assert expert_activation_counts(logits, top_k=2).tolist() == [[3, 2, 3]]
    batched = logits.reshape(2, 2, 3)  # (batch, seq, E) layers are flattened into tokens
    assert expert_activation_counts([batched, batched], top_k=1).tolist() == [[2, 1, 1], [2, 1, 1]]
