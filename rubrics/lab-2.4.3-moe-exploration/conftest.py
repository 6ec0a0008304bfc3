"""Configs for moe_param_counts as they cross into the sandbox: plain dicts with every field of the config
(json of config.to_dict()); the lab turns a dict back into the config object. The trusted side counts from the
config object."""

from __future__ import annotations

import json

import pytest
from transformers import DeepseekV2Config, DeepseekV3Config, MixtralConfig, Qwen2MoeConfig


def as_dict(config) -> dict:
    return json.loads(config.to_json_string())


@pytest.fixture
def moe_configs():
    """name -> config.json dict. Small enough to instantiate, except Mixtral-8x7B and DeepSeekMoE-16B (their
    published configs)."""
    return {
        "mixtral": as_dict(MixtralConfig(vocab_size=1000, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                                         num_attention_heads=4, num_key_value_heads=2, num_local_experts=8,
                                         num_experts_per_tok=2)),
        "mixtral_top3": as_dict(MixtralConfig(vocab_size=500, hidden_size=48, intermediate_size=80,
                                              num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=3,
                                              num_local_experts=6, num_experts_per_tok=3)),
        "qwen2_moe": as_dict(Qwen2MoeConfig(vocab_size=1000, hidden_size=64, intermediate_size=128,
                                            moe_intermediate_size=24, shared_expert_intermediate_size=96,
                                            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                            num_experts=12, num_experts_per_tok=4)),
        "qwen2_moe_dense": as_dict(Qwen2MoeConfig(vocab_size=800, hidden_size=32, intermediate_size=80,
                                                  moe_intermediate_size=16, shared_expert_intermediate_size=40,
                                                  num_hidden_layers=5, num_attention_heads=4, num_key_value_heads=2,
                                                  num_experts=6, num_experts_per_tok=2, mlp_only_layers=[0],
                                                  decoder_sparse_step=2)),
        "qwen2_moe_tied": as_dict(Qwen2MoeConfig(vocab_size=1200, hidden_size=32, intermediate_size=64,
                                                 moe_intermediate_size=16, shared_expert_intermediate_size=32,
                                                 num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                                 num_experts=4, num_experts_per_tok=2, tie_word_embeddings=True)),
        "mixtral_tied": as_dict(MixtralConfig(vocab_size=1500, hidden_size=32, intermediate_size=48,
                                              num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                              num_local_experts=4, num_experts_per_tok=2, tie_word_embeddings=True)),
        "mixtral_8x7b": as_dict(MixtralConfig()),  # transformers' defaults are Mixtral-8x7B
        # DeepSeekMoE (model_type "deepseek": remote code, no transformers class): its config.json fields.
        "deepseek_moe": dict(model_type="deepseek", vocab_size=700, hidden_size=32, intermediate_size=88,
                             moe_intermediate_size=12, num_hidden_layers=4, num_attention_heads=4,
                             num_key_value_heads=4, n_routed_experts=10, n_shared_experts=2, num_experts_per_tok=3,
                             first_k_dense_replace=1, moe_layer_freq=1, attention_bias=False,
                             tie_word_embeddings=False),
        "deepseek_moe_16b": dict(model_type="deepseek", vocab_size=102400, hidden_size=2048, intermediate_size=10944,
                                 moe_intermediate_size=1408, num_hidden_layers=28, num_attention_heads=16,
                                 num_key_value_heads=16, n_routed_experts=64, n_shared_experts=2,
                                 num_experts_per_tok=6, first_k_dense_replace=1, moe_layer_freq=1,
                                 attention_bias=False, tie_word_embeddings=False),
        "deepseek_v2_lite_like": as_dict(DeepseekV2Config(
            vocab_size=600, hidden_size=32, intermediate_size=72, moe_intermediate_size=8, num_hidden_layers=3,
            num_attention_heads=4, num_key_value_heads=4, n_routed_experts=8, n_shared_experts=2,
            num_experts_per_tok=2, first_k_dense_replace=1, q_lora_rank=None, kv_lora_rank=16, qk_nope_head_dim=8,
            qk_rope_head_dim=4, v_head_dim=8)),
        "deepseek_v3_like": as_dict(DeepseekV3Config(
            vocab_size=600, hidden_size=32, intermediate_size=72, moe_intermediate_size=8, num_hidden_layers=4,
            num_attention_heads=4, num_key_value_heads=4, n_routed_experts=8, n_shared_experts=1,
            num_experts_per_tok=2, first_k_dense_replace=2, q_lora_rank=12, kv_lora_rank=16, qk_nope_head_dim=8,
            qk_rope_head_dim=4, v_head_dim=8, n_group=2, topk_group=1)),
    }
