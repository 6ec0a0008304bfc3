"""Hardware profiles, KV cache / SSM state maths and parameter counts, against docs/facts.md and transformers itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers as T

from reference.catalogue import MODELS, lookup
from reference.hardware import PROFILES, get_profile
from reference.memory import (
    active_params_by_role,
    distinct_experts,
    dtype_bytes,
    estimate_params,
    kv_cache_bytes,
    kv_cache_bytes_per_token,
    mamba_state_bytes,
    normalize_dtype,
    unquantised_params_read,
    unquantised_roles,
)
from reference.model_config import layer_windows


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


# Published config.json fields of one model per family (tests/data/published/configs.json).
PUBLISHED_CONFIGS = {k: v for k, v in json.loads(
    (Path(__file__).parent / "data" / "published" / "configs.json").read_text()).items() if not k.startswith("_")}


def _full(cfg: dict) -> dict:
    """The config completed with its transformers class's defaults, as plausibility reads a record's config."""
    kwargs = {k: v for k, v in cfg.items() if k not in ("model_type", "quantization_config")}
    return {**T.AutoConfig.for_model(cfg["model_type"], **kwargs).to_dict(), **cfg}


@pytest.mark.parametrize("name", sorted(PUBLISHED_CONFIGS))
def test_published_configs_count_like_transformers_modelling_code(name):
    """One family each (two-matrix MLPs, learned positions, multi-query, gated, MoE): counted on the meta device."""
    cfg = _full(PUBLISHED_CONFIGS[name])
    kwargs = {k: v for k, v in PUBLISHED_CONFIGS[name].items() if k not in ("model_type", "quantization_config")}
    with torch.device("meta"):
        model = T.AutoModelForCausalLM.from_config(T.AutoConfig.for_model(cfg["model_type"], **kwargs))
    actual = sum(p.numel() for p in model.parameters())
    assert estimate_params(cfg).total == pytest.approx(actual, rel=2e-3)


@pytest.mark.parametrize(("name", "published"), [
    ("EleutherAI/gpt-j-6b", 6.05e9),  # model card: 6,053,381,344 parameters
    ("openai-community/gpt2", 124e6),
    ("facebook/opt-1.3b", 1.3e9),
    ("bigscience/bloom-560m", 559e6),  # model card: 559,214,592
    ("tiiuae/falcon-7b", 7e9),
    ("openai/gpt-oss-120b", 116.8e9),  # model card: 117B total, 5.1B active
    ("openai/gpt-oss-20b", 21e9),  # model card: 21B total, 3.6B active
    ("Qwen/Qwen3-30B-A3B", 30.5e9),  # model card: 30.5B total, 3.3B activated
])
def test_two_matrix_and_moe_families_match_their_model_cards(name, published):
    assert estimate_params(_full(PUBLISHED_CONFIGS[name])).total == pytest.approx(published, rel=0.03)


@pytest.mark.parametrize(("name", "active", "with_input_embedding"), [
    ("openai/gpt-oss-120b", 5.1e9, False),  # the gpt-oss card counts active parameters without the input table
    ("openai/gpt-oss-20b", 3.6e9, False),
    ("Qwen/Qwen3-30B-A3B", 3.3e9, True),
])
def test_moe_active_counts_match_their_model_cards(name, active, with_input_embedding):
    est = estimate_params(_full(PUBLISHED_CONFIGS[name]))
    assert est.active - (0 if with_input_embedding else est.embedding) == pytest.approx(active, rel=0.05)


def test_sliding_windows_follow_layer_types():
    oss = _full(PUBLISHED_CONFIGS["openai/gpt-oss-20b"])
    assert layer_windows(oss)[:4] == [128, None, 128, None]
    # 12 windowed layers hold 128 tokens, 12 full layers hold all 8192: 8 KV heads of 64, bf16
    assert kv_cache_bytes(oss, 8192) == (12 * 128 + 12 * 8192) * 2 * 8 * 64 * 2
    gemma2_raw = dict(PUBLISHED_CONFIGS["google/gemma-2-9b"])  # a config.json without layer_types
    assert layer_windows(gemma2_raw)[:4] == [4096, None, 4096, None]
    gemma3 = {"model_type": "gemma3_text", "num_hidden_layers": 12, "hidden_size": 64, "num_attention_heads": 4,
              "sliding_window": 1024, "sliding_window_pattern": 6}
    assert [w is None for w in layer_windows(gemma3)] == [False] * 5 + [True] + [False] * 5 + [True]
    mistral = {"model_type": "mistral", "num_hidden_layers": 4, "hidden_size": 64, "num_attention_heads": 4,
               "sliding_window": 4096}  # v0.1: every layer windowed
    assert layer_windows(mistral) == [4096] * 4
    assert kv_cache_bytes({**mistral, "use_sliding_window": False}, 8192) == 2 * 8192 * 4 * 64 * 2


def test_distinct_experts_follow_uniform_routing():
    assert distinct_experts(128, 4, 1) == 4
    assert distinct_experts(8, 2, 10_000) == pytest.approx(8)
    rng = np.random.default_rng(0)
    trials = [len({e for _ in range(16) for e in rng.choice(32, 4, replace=False)}) for _ in range(4000)]
    assert distinct_experts(32, 4, 16) == pytest.approx(np.mean(trials), rel=0.02)
    assert distinct_experts(8, -3, 50) == 0  # a config's nonsense does not overflow


def test_quantised_gpt_oss_keeps_attention_router_and_lm_head_at_16_bits():
    cfg = _full(PUBLISHED_CONFIGS["openai/gpt-oss-120b"])
    assert unquantised_roles(cfg) == {"mixer", "router", "lm_head"}
    roles = active_params_by_role(cfg)
    assert unquantised_params_read(cfg) == roles["mixer"] + roles["router"] + roles["lm_head"]
    # a decode step reads ~4.9 GB, not the 2.3 GB of 5.1 B active parameters all at 4 bits
    read = roles["experts"] * 0.5 + unquantised_params_read(cfg) * 2
    assert 4.5e9 < read < 5.3e9
    assert unquantised_roles(PUBLISHED_CONFIGS["google/gemma-2-9b"]) == set()


def test_rtx_4090_ceiling_uses_fp16_accumulate():
    gpu = get_profile("rtx-4090")
    assert gpu.peak_flops(2) == 165e12 and gpu.peak_flops(2, fp16_accumulate=True) == 330e12
    assert get_profile("h100-sxm").peak_flops(2, fp16_accumulate=True) == 989e12
