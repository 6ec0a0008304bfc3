"""MoE counting: parameter counts against instantiated transformers models and published figures; expert
activation counts against transformers' routers."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    DeepseekV2Config,
    DeepseekV3Config,
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
    # DeepSeek-V2-Lite's shape: MLA without a q LoRA, 2 shared + 6 routed experts, the first layer dense.
    "deepseek-v2-shared-first-dense": DeepseekV2Config(
        **TINY, num_hidden_layers=3, intermediate_size=40, moe_intermediate_size=8, n_routed_experts=6,
        n_shared_experts=2, num_experts_per_tok=2, first_k_dense_replace=1, q_lora_rank=None, kv_lora_rank=8,
        qk_nope_head_dim=4, qk_rope_head_dim=2, v_head_dim=4,
    ),
    # DeepSeek-V3's shape: q LoRA, 1 shared expert, sigmoid group routing, two dense layers; plus biases and tying.
    "deepseek-v3-q-lora-bias-tied": DeepseekV3Config(
        **TINY, num_hidden_layers=4, intermediate_size=40, moe_intermediate_size=8, n_routed_experts=8,
        n_shared_experts=1, num_experts_per_tok=2, first_k_dense_replace=2, q_lora_rank=12, kv_lora_rank=8,
        qk_nope_head_dim=4, qk_rope_head_dim=2, v_head_dim=4, n_group=2, topk_group=1, attention_bias=True,
        tie_word_embeddings=True,
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


# DeepSeekMoE-16B's config.json (deepseek-ai/deepseek-moe-16b-base; model_type "deepseek", remote code only).
DEEPSEEK_MOE_16B = dict(
    model_type="deepseek", vocab_size=102400, hidden_size=2048, intermediate_size=10944, moe_intermediate_size=1408,
    num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=16, n_routed_experts=64, n_shared_experts=2,
    num_experts_per_tok=6, first_k_dense_replace=1, moe_layer_freq=1, attention_bias=False, tie_word_embeddings=False,
)


def test_moe_param_counts_deepseek_moe_16b_published_figures() -> None:
    # github.com/deepseek-ai/DeepSeek-MoE README: "DeepSeekMoE 16B ... with 16.4B parameters"; the DeepSeekMoE paper
    # (arXiv 2401.06066) gives 2.8B activated. The Open LLM Leaderboard request file for the checkpoint records
    # "params": 16.376 (billions, counted from its weights): the count agrees to the last published digit.
    counts = moe_param_counts(DEEPSEEK_MOE_16B)  # a plain dict: transformers has no class for model_type "deepseek"
    assert counts["total"] == 16_375_728_128
    assert round(counts["total"] / 1e9, 3) == 16.376
    assert round(counts["active"] / 1e9, 1) == 2.8


def test_moe_param_counts_deepseek_moe_hand_count_with_layer_frequency() -> None:
    # Dense layers: the first first_k_dense_replace, then every layer off the moe_layer_freq grid (DeepSeek's own
    # modelling code). Layers 0, 1 dense (k=2), 2 sparse, 3 dense (odd), 4 sparse.
    v, h, heads, f, f_moe, e, k, shared = 50, 16, 4, 40, 8, 6, 2, 2
    config = dict(model_type="deepseek", vocab_size=v, hidden_size=h, intermediate_size=f, moe_intermediate_size=f_moe,
                  num_hidden_layers=5, num_attention_heads=heads, n_routed_experts=e, n_shared_experts=shared,
                  num_experts_per_tok=k, first_k_dense_replace=2, moe_layer_freq=2)
    attention_and_norms = 4 * h * h + 2 * h  # MHA q, k, v, o without biases (num_key_value_heads defaults to heads)
    dense = 3 * h * f
    sparse = e * h + e * 3 * h * f_moe + 3 * h * f_moe * shared  # router, routed experts, fused shared experts
    total = 2 * v * h + h + 5 * attention_and_norms + 3 * dense + 2 * sparse
    assert moe_param_counts(config) == {"total": total, "active": total - 2 * (e - k) * 3 * h * f_moe}
    no_shared = moe_param_counts({**config, "n_shared_experts": None})
    assert no_shared["total"] == total - 2 * 3 * h * f_moe * shared


def test_moe_param_counts_deepseek_v2_lite_published_figures() -> None:
    # deepseek-ai/DeepSeek-V2-Lite config.json; the DeepSeek-V2 paper (arXiv 2405.04434, appendix B) and the model
    # card: 15.7B total, 2.4B activated. Our active count includes the 0.21B embedding table (one row read per
    # token); the published 2.4B leaves it out (2.45B without it).
    lite = DeepseekV2Config(
        vocab_size=102400, hidden_size=2048, intermediate_size=10944, moe_intermediate_size=1408, num_hidden_layers=27,
        num_attention_heads=16, num_key_value_heads=16, n_routed_experts=64, n_shared_experts=2, num_experts_per_tok=6,
        first_k_dense_replace=1, q_lora_rank=None, kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64,
        v_head_dim=128,
    )
    counts = moe_param_counts(lite)
    assert round(counts["total"] / 1e9, 1) == 15.7
    assert 2.4e9 <= counts["active"] - 102400 * 2048 < 2.5e9


def test_moe_param_counts_deepseek_v3_published_figures() -> None:
    # deepseek-ai/DeepSeek-V3 inference/configs/config_671B.json; the DeepSeek-V3 technical report (arXiv 2412.19437):
    # "671B total parameters with 37B activated for each token" (the 14B multi-token-prediction module comes on top
    # of the 671B; transformers does not build it). transformers' DeepseekV3Config defaults are this model.
    v3 = DeepseekV3Config(
        vocab_size=129280, hidden_size=7168, intermediate_size=18432, moe_intermediate_size=2048, num_hidden_layers=61,
        num_attention_heads=128, num_key_value_heads=128, n_routed_experts=256, n_shared_experts=1,
        num_experts_per_tok=8, first_k_dense_replace=3, q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128,
        qk_rope_head_dim=64, v_head_dim=128, n_group=8, topk_group=4,
    )
    counts = moe_param_counts(v3)
    assert round(counts["total"] / 1e9) == 671
    assert round((counts["active"] - 129280 * 7168) / 1e9) == 37  # 36.6B without the embedding table, 37.6B with
    assert counts == moe_param_counts(v3.to_dict()), "a dict of the config's fields counts the same"


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
