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


def test_kv_multi_head(student, configs, rng):
    for seq_len in (1, 4096, int(torch.randint(100, 5000, (1,), generator=rng))):
        kv(student, "pythia-2.8b", configs["pythia"], seq_len)


def test_kv_grouped_query(student, configs):
    kv(student, "Mixtral-8x7B", configs["mixtral"], 1)  # 128 KiB per token in bf16 (docs/facts.md)
    kv(student, "Mixtral-8x7B", configs["mixtral"], 32768)
    kv(student, "Llama-3-8B", configs["llama_8b"], 8192)


def test_kv_multi_query(student, configs):
    kv(student, "pythia-2.8b with one K/V head", {**configs["pythia"], "num_key_value_heads": 1}, 2048)


def test_kv_head_dim(student, configs):
    # Gemma-2B: 8 heads of 256 = 2048 = hidden_size; a head_dim of 128 makes hidden_size / heads wrong.
    kv(student, "Gemma-2B (MQA, head_dim 256)", configs["gemma_2b"], 8192)
    kv(student, "pythia-2.8b with head_dim 128", {**configs["pythia"], "head_dim": 128}, 1000)


def test_kv_batch_and_dtype(student, configs):
    kv(student, "Llama-3-8B", configs["llama_8b"], 4096, batch_size=3, dtype_bytes=4)
    kv(student, "Mixtral-8x7B", configs["mixtral"], 1000, batch_size=8, dtype_bytes=1)


def test_kv_sliding_window(student, configs):
    kv(student, "Mistral-7B (4K window)", configs["mistral"], 20000)
    kv(student, "Mistral-7B (4K window)", configs["mistral"], 1000)
    kv(student, "Qwen2-7B (use_sliding_window False)", configs["qwen2"], 32768)


def test_kv_hybrid_and_ssm(student, configs):
    kv(student, "a hybrid with 1 attention layer in 6", {**configs["jamba"], "num_hidden_layers": 24,
                                                            "attn_layer_period": 6, "attn_layer_offset": 3}, 8192)
    kv(student, "Jamba (1 attention layer in 8)", configs["jamba"], 262144)
    kv(student, "mamba-2.8b", configs["mamba_2_8b"], 4096)


def test_kv_latent_attention(student, configs):
    kv(student, "DeepSeek-V2-Lite (MLA)", configs["deepseek_v2_lite"], 32768)


def test_state_mamba1(student, configs):
    state(student, "mamba-2.8b", configs["mamba_2_8b"])  # 13.1 MB in bf16 (docs/facts.md)
    state(student, "mamba-370m", {**configs["mamba_2_8b"], "num_hidden_layers": 48, "hidden_size": 1024})


def test_state_intermediate_size(student, configs):
    state(student, "mamba-130m", configs["mamba_130m"])
    state(student, "mamba-2.8b with intermediate_size 4000", {**configs["mamba_2_8b"], "intermediate_size": 4000})


def test_state_defaults(student):
    state(student, "a Mamba config with only its sizes",
          {"model_type": "mamba", "num_hidden_layers": 48, "hidden_size": 1536})


def test_state_batch_and_dtype(student, configs):
    state(student, "mamba-2.8b", configs["mamba_2_8b"], batch_size=16, dtype_bytes=4)
    state(student, "mamba-130m", configs["mamba_130m"], batch_size=3, dtype_bytes=1)


def test_state_mamba2(student, configs):
    state(student, "Mamba-2 2.7B", configs["mamba2_2_7b"])


def test_state_hybrid_and_transformer(student, configs):
    state(student, "Jamba (7 Mamba layers in 8)", configs["jamba"])
    state(student, "pythia-2.8b", configs["pythia"])
