"""Hardware profiles, KV cache / SSM state maths and parameter counts, against FACTS.md and transformers itself."""

from __future__ import annotations

import pytest
import torch
import transformers as T

from reference.catalogue import MODELS, lookup
from reference.hardware import PROFILES, get_profile
from reference.memory import (
    dtype_bytes,
    estimate_params,
    kv_cache_bytes,
    kv_cache_bytes_per_token,
    mamba_state_bytes,
    normalize_dtype,
)


def test_profiles_have_the_facts_table_figures():
    spark = get_profile("dgx-spark")
    assert spark.bandwidth_bytes_s == 273e9
    assert spark.flops_estimated and spark.bf16_flops == 125e12
    assert 119e9 < spark.usable_memory_bytes < spark.memory_bytes
    assert get_profile("H100-SXM").bandwidth_bytes_s == 3350e9
    assert get_profile("h200").bandwidth_bytes_s == 4800e9
    assert get_profile("a100-80gb").bf16_flops == 312e12
    assert get_profile("rtx-4090").memory_bytes >= 24e9
    assert get_profile("l4").bandwidth_bytes_s == 300e9
    assert set(PROFILES) == {"dgx-spark", "h100-sxm", "h200", "a100-80gb", "rtx-4090", "l4", "cpu"}


def test_cpu_profile_is_a_generous_ceiling():
    cpu = get_profile("cpu")
    assert cpu.bandwidth_bytes_s >= 1.2e12 and cpu.bf16_flops >= 5e14 and cpu.memory_bytes >= 4 * 2**40


def test_unknown_profile_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"dgx-spark.*h100-sxm.*cpu"):
        get_profile("tpu-v5")


def test_mixtral_kv_cache_is_128_kib_per_token_in_bf16():
    assert kv_cache_bytes_per_token(MODELS["mixtral-8x7b"].config) == 128 * 1024
    assert kv_cache_bytes(MODELS["mixtral-8x7b"].config, 4096, batch_size=2) == 2 * 4096 * 128 * 1024


def test_mamba_2_8b_state_is_13_1_mb_in_bf16_and_independent_of_context():
    cfg = MODELS["mamba-2.8b"].config
    assert mamba_state_bytes(cfg) == 64 * 5120 * (16 + 4) * 2 == 13_107_200
    assert kv_cache_bytes(cfg, 32768) == 0


def test_kv_cache_reads_gpt_neox_and_gqa_field_names():
    pythia = {"model_type": "gpt_neox", "num_hidden_layers": 16, "hidden_size": 2048, "num_attention_heads": 8}
    assert kv_cache_bytes_per_token(pythia) == 2 * 16 * 2048 * 2  # MHA: kv heads = heads, head_dim = hidden/heads
    gqa = {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 8, "num_key_value_heads": 2}
    assert kv_cache_bytes_per_token(gqa, dtype_bytes=4) == 2 * 2 * 2 * 8 * 4
    gpt2 = {"n_layer": 12, "n_embd": 768, "n_head": 12}
    assert kv_cache_bytes_per_token(gpt2) == 2 * 12 * 768 * 2


def test_jamba_like_hybrid_counts_only_attention_layers():
    cfg = {"model_type": "jamba", "num_hidden_layers": 8, "hidden_size": 64, "num_attention_heads": 4,
           "num_key_value_heads": 2, "attn_layer_period": 4, "attn_layer_offset": 2, "mamba_d_state": 8,
           "mamba_d_conv": 4, "mamba_expand": 2}
    assert kv_cache_bytes_per_token(cfg) == 2 * 2 * 2 * 16 * 2  # 2 attention layers of 8
    assert mamba_state_bytes(cfg) == 6 * 128 * (8 + 4) * 2


def _cache_bytes(cache) -> int:
    total = 0
    for layer in cache.layers:
        for value in vars(layer).values():
            tensors = value.values() if isinstance(value, dict) else [value]  # Mamba layers keep dicts of states
            total += sum(t.numel() * t.element_size() for t in tensors if torch.is_tensor(t))
    return total


def test_kv_cache_bytes_match_a_transformers_cache_of_a_tiny_gqa_llama():
    cfg = T.LlamaConfig(vocab_size=100, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                        num_attention_heads=8, num_key_value_heads=2)
    torch.manual_seed(0)
    model = T.LlamaForCausalLM(cfg).to(torch.bfloat16).eval()
    with torch.no_grad():
        out = model(torch.randint(0, 100, (2, 37)), use_cache=True)
    assert _cache_bytes(out.past_key_values) == kv_cache_bytes(cfg, 37, batch_size=2, dtype_bytes=2)


def test_mamba_state_bytes_match_a_transformers_mamba_cache():
    cfg = T.MambaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=3, state_size=8)
    torch.manual_seed(0)
    model = T.MambaForCausalLM(cfg).eval()
    with torch.no_grad():
        out = model(torch.randint(0, 100, (2, 11)), use_cache=True)
    assert _cache_bytes(out.cache_params) == mamba_state_bytes(cfg, batch_size=2, dtype_bytes=4)


TINY = {
    "llama": T.LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2),
    "gpt_neox": T.GPTNeoXConfig(vocab_size=1000, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                                num_attention_heads=4),
    "mamba": T.MambaConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2),
    "mixtral": T.MixtralConfig(vocab_size=1000, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                               num_attention_heads=4, num_key_value_heads=2, num_local_experts=4,
                               num_experts_per_tok=2),
    "qwen2_moe": T.Qwen2MoeConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
                                  shared_expert_intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                                  num_key_value_heads=4, num_experts=6, num_experts_per_tok=2, mlp_only_layers=[1]),
    "olmoe": T.OlmoeConfig(vocab_size=1000, hidden_size=64, intermediate_size=32, num_hidden_layers=2,
                           num_attention_heads=4, num_experts=8, num_experts_per_tok=2),
    "deepseek_v2": T.DeepseekV2Config(vocab_size=1000, hidden_size=64, intermediate_size=160, moe_intermediate_size=24,
                                      num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
                                      n_routed_experts=8, n_shared_experts=2, num_experts_per_tok=3,
                                      first_k_dense_replace=1, kv_lora_rank=32, q_lora_rank=None,
                                      qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, head_dim=8),
    "jamba": T.JambaConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                           num_attention_heads=4, num_key_value_heads=2, num_experts=4, num_experts_per_tok=2,
                           attn_layer_period=2, attn_layer_offset=1, expert_layer_period=2, expert_layer_offset=1,
                           mamba_d_state=8, mamba_expand=2),
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_estimated_params_match_transformers_counts(name):
    cfg = TINY[name]
    torch.manual_seed(0)
    model = T.AutoModelForCausalLM.from_config(cfg)
    actual = sum(p.numel() for p in model.parameters())
    for source in (cfg, cfg.to_dict()):  # a config object or its dict
        assert estimate_params(source).total == pytest.approx(actual, rel=2e-3)


def test_moe_active_params_count_top_k_experts():
    est = estimate_params(TINY["mixtral"])
    expert = 3 * 64 * 96
    assert est.total - est.active == 2 * (4 - 2) * expert  # 2 layers, 2 of 4 experts idle per token


@pytest.mark.parametrize("name", [n for n, e in MODELS.items() if e.params_total is not None])
def test_catalogue_shapes_reproduce_published_totals(name):
    entry = MODELS[name]
    assert entry.estimated.total == pytest.approx(entry.params_total, rel=0.01)
    # published active counts may leave out the input embedding (DeepSeek-V2-Lite): within 12 %
    assert entry.estimated.active == pytest.approx(entry.params_active, rel=0.12)


def test_catalogue_lookup_accepts_hf_ids_and_hf_suffix():
    assert lookup("state-spaces/mamba-2.8b-hf") is MODELS["mamba-2.8b"]
    assert lookup("EleutherAI/pythia-1.4b") is MODELS["pythia-1.4b"]
    assert lookup("mistralai/Mixtral-8x7B-v0.1") is MODELS["mixtral-8x7b"]
    assert lookup("deepseek-ai/DeepSeek-V2-Lite") is MODELS["deepseek-v2-lite"]
    assert lookup("my-own-model") is None
    for name in ("mamba-130m", "mamba-370m", "mamba-790m", "mamba-1.4b", "pythia-410m", "pythia-1b", "pythia-2.8b",
                 "deepseek-moe-16b", "qwen1.5-moe-a2.7b", "olmoe-1b-7b"):
        assert lookup(name) is not None


def test_dtype_names_normalise():
    assert normalize_dtype("torch.bfloat16") == "bf16"
    assert dtype_bytes("float32") == 4 and dtype_bytes("fp8") == 1 and dtype_bytes("nf4") == 0.5
    with pytest.raises(ValueError, match="unknown dtype"):
        normalize_dtype("float128")
