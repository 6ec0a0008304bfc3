"""Hidden checks for kv_cache_bytes and mamba_state_bytes: exact integers against the reference's memory maths,
on real models' configs (plain dicts of config.json fields; the lab accepts a dict or a config object)."""

from __future__ import annotations

import torch

from autograder.checks.api import expect_equal
from reference import kv_cache_bytes as reference_kv
from reference import mamba_state_bytes as reference_state


def kv(student, name, config, seq_len, batch_size=1, dtype_bytes=2):
    got = student.kv_cache_bytes(config, seq_len, batch_size=batch_size, dtype_bytes=dtype_bytes)
    want = reference_kv(config, seq_len, batch_size, dtype_bytes)
    expect_equal(got, want, name=f"kv_cache_bytes({name}, seq_len={seq_len}, batch_size={batch_size}, "
                                 f"dtype_bytes={dtype_bytes})")


def state(student, name, config, batch_size=1, dtype_bytes=2):
    got = student.mamba_state_bytes(config, batch_size=batch_size, dtype_bytes=dtype_bytes)
    want = reference_state(config, batch_size, dtype_bytes)
    expect_equal(got, want, name=f"mamba_state_bytes({name}, batch_size={batch_size}, dtype_bytes={dtype_bytes})")


def draw(rng, low, high):
    return int(torch.randint(low, high + 1, (1,), generator=rng))


def test_kv_multi_head(student, configs, rng):
    for seq_len in (1, 4096, draw(rng, 100, 5000)):
        kv(student, "pythia-2.8b", configs["pythia"], seq_len)


def test_kv_grouped_query(student, configs, rng):
    kv(student, "Mixtral-8x7B", configs["mixtral"], 1)  # 128 KiB per token in bf16 (docs/facts.md)
    kv(student, "Mixtral-8x7B", configs["mixtral"], draw(rng, 8192, 32768))
    kv(student, "Llama-3-8B", configs["llama_8b"], draw(rng, 1000, 8192))


def test_kv_multi_query(student, configs, rng):
    kv(student, "pythia-2.8b with one K/V head", {**configs["pythia"], "num_key_value_heads": 1}, draw(rng, 500, 4000))


def test_kv_head_dim(student, configs, rng):
    # Gemma-2B: 8 heads of 256 = 2048 = hidden_size; a head_dim of 128 makes hidden_size / heads wrong.
    kv(student, "Gemma-2B (MQA, head_dim 256)", configs["gemma_2b"], draw(rng, 1000, 8192))
    kv(student, "pythia-2.8b with head_dim 128", {**configs["pythia"], "head_dim": 128}, draw(rng, 100, 2000))


def test_kv_batch_and_dtype(student, configs, rng):
    kv(student, "Llama-3-8B", configs["llama_8b"], draw(rng, 1000, 4096), batch_size=draw(rng, 2, 8), dtype_bytes=4)
    kv(student, "Mixtral-8x7B", configs["mixtral"], draw(rng, 100, 1000), batch_size=draw(rng, 2, 16), dtype_bytes=1)


def test_kv_sliding_window(student, configs, rng):
    kv(student, "Mistral-7B (4K window)", configs["mistral"], draw(rng, 4097, 32768))
    kv(student, "Mistral-7B (4K window)", configs["mistral"], draw(rng, 100, 4096))
    kv(student, "Qwen2-7B (use_sliding_window False)", configs["qwen2"], draw(rng, 4097, 32768))


def test_kv_hybrid_and_ssm(student, configs, rng):
    kv(student, "a hybrid with 1 attention layer in 6", {**configs["jamba"], "num_hidden_layers": 24,
                                                            "attn_layer_period": 6, "attn_layer_offset": 3},
       draw(rng, 1000, 8192))
    kv(student, "Jamba (1 attention layer in 8)", configs["jamba"], draw(rng, 8192, 262144))
    kv(student, "mamba-2.8b", configs["mamba_2_8b"], draw(rng, 100, 4096))


def test_kv_latent_attention(student, configs, rng):
    # MLA caches one latent of kv_lora_rank plus the shared rope key of qk_rope_head_dim per token and layer: no
    # factor 2 and no heads. DeepSeek-V2 writes num_key_value_heads = num_attention_heads into its config, so a
    # per-head K and V count, or one without the rope key, differs; a random rank makes both terms visible.
    kv(student, "DeepSeek-V2-Lite (MLA)", configs["deepseek_v2_lite"], draw(rng, 1000, 32768),
       batch_size=draw(rng, 2, 4))
    rank = 64 * draw(rng, 2, 9)
    kv(student, f"DeepSeek-V2 with kv_lora_rank {rank} (MLA)",
       {**configs["deepseek_v2_lite"], "num_hidden_layers": 60, "hidden_size": 5120, "num_attention_heads": 128,
        "num_key_value_heads": 128, "kv_lora_rank": rank}, draw(rng, 1000, 32768))


def test_state_mamba1(student, configs, rng):
    state(student, "mamba-2.8b", configs["mamba_2_8b"])  # 13.1 MB in bf16 (docs/facts.md)
    layers = draw(rng, 12, 64)
    state(student, f"a Mamba of {layers} layers", {**configs["mamba_2_8b"], "num_hidden_layers": layers,
                                                   "hidden_size": 256 * draw(rng, 2, 8)})


def test_state_intermediate_size(student, configs, rng):
    state(student, "mamba-130m", configs["mamba_130m"])
    inner = 8 * draw(rng, 300, 700)
    state(student, f"mamba-2.8b with intermediate_size {inner}", {**configs["mamba_2_8b"], "intermediate_size": inner})


def test_state_defaults(student, rng):
    layers, hidden = draw(rng, 8, 64), 256 * draw(rng, 2, 10)
    state(student, "a Mamba config with only its sizes",
          {"model_type": "mamba", "num_hidden_layers": layers, "hidden_size": hidden})


def test_state_batch_and_dtype(student, configs, rng):
    state(student, "mamba-2.8b", configs["mamba_2_8b"], batch_size=draw(rng, 2, 32), dtype_bytes=4)
    state(student, "mamba-130m", configs["mamba_130m"], batch_size=draw(rng, 2, 8), dtype_bytes=1)


def test_state_mamba2(student, configs, rng):
    state(student, "Mamba-2 2.7B", configs["mamba2_2_7b"], batch_size=draw(rng, 2, 4))


def test_state_hybrid_and_transformer(student, configs, rng):
    state(student, "Jamba (7 Mamba layers in 8)", configs["jamba"], batch_size=draw(rng, 2, 4))
    state(student, "pythia-2.8b", configs["pythia"])
