"""Configs for the memory checks (plain dicts with config.json field names, as the lab allows) and the lab's tiny
models loaded in this trusted process.

The models folder on the trusted side is named by $SPARKGRADE_MODELS_TRUSTED (the grader sets it to the same folder
the sandbox loads ``Model(name)`` from). Without it the checks that need a model fail as a grader error."""

from __future__ import annotations

import pytest

# Real models' config.json fields (docs/facts.md, "The models the labs name"), and variations of them.
PYTHIA = {"model_type": "gpt_neox", "num_hidden_layers": 32, "hidden_size": 2560, "num_attention_heads": 32}
MIXTRAL = {"model_type": "mixtral", "num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32,
           "num_key_value_heads": 8, "head_dim": 128}
LLAMA_8B = {"model_type": "llama", "num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32,
            "num_key_value_heads": 8}
GEMMA_2B = {"model_type": "gemma", "num_hidden_layers": 18, "hidden_size": 2048, "num_attention_heads": 8,
            "num_key_value_heads": 1, "head_dim": 256}
MISTRAL = {**LLAMA_8B, "model_type": "mistral", "head_dim": 128, "sliding_window": 4096}
QWEN2 = {"model_type": "qwen2", "num_hidden_layers": 28, "hidden_size": 3584, "num_attention_heads": 28,
         "num_key_value_heads": 4, "sliding_window": 4096, "use_sliding_window": False}
JAMBA = {"model_type": "jamba", "num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32,
         "num_key_value_heads": 8, "attn_layer_period": 8, "attn_layer_offset": 4, "intermediate_size": 14336,
         "mamba_d_state": 16, "mamba_d_conv": 4, "mamba_expand": 2}
DEEPSEEK_V2_LITE = {"model_type": "deepseek_v2", "num_hidden_layers": 27, "hidden_size": 2048,
                    "num_attention_heads": 16, "kv_lora_rank": 512, "qk_rope_head_dim": 64, "qk_nope_head_dim": 128,
                    "v_head_dim": 128}
MAMBA_130M = {"model_type": "mamba", "num_hidden_layers": 24, "hidden_size": 768, "state_size": 16,
              "conv_kernel": 4, "expand": 2, "intermediate_size": 1536}
MAMBA_2_8B = {"model_type": "mamba", "num_hidden_layers": 64, "hidden_size": 2560, "state_size": 16,
              "conv_kernel": 4, "expand": 2}
MAMBA2_2_7B = {"model_type": "mamba2", "num_hidden_layers": 64, "hidden_size": 2560, "state_size": 128,
               "conv_kernel": 4, "expand": 2, "n_groups": 1, "num_heads": 80, "head_dim": 64}


@pytest.fixture
def configs():
    return {"pythia": PYTHIA, "mixtral": MIXTRAL, "llama_8b": LLAMA_8B, "gemma_2b": GEMMA_2B, "mistral": MISTRAL,
            "qwen2": QWEN2, "jamba": JAMBA, "deepseek_v2_lite": DEEPSEEK_V2_LITE, "mamba_130m": MAMBA_130M,
            "mamba_2_8b": MAMBA_2_8B, "mamba2_2_7b": MAMBA2_2_7B}
