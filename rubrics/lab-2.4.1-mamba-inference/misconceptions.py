"""Known mistakes in lab 2.4.1, as mutated references. The engine names the one the student's outputs match.

benchmark_generation has none: timings differ run to run, so no mutant could reproduce a student's numbers; its
checks say in their messages what to fix."""

from __future__ import annotations

from autograder.checks.api import Misconception
from reference import kv_cache_bytes, mamba_state_bytes
from reference.memory import layer_kinds, mamba_dims


def _without(config, *names):
    return {k: v for k, v in dict(config).items() if k not in names}


def _kv_no_factor_2(config, seq_len, batch_size=1, dtype_bytes=2):
    return kv_cache_bytes(config, seq_len, batch_size, dtype_bytes) // 2


def _kv_query_heads(config, seq_len, batch_size=1, dtype_bytes=2):
    return kv_cache_bytes(_without(config, "num_key_value_heads"), seq_len, batch_size, dtype_bytes)


def _kv_bits(config, seq_len, batch_size=1, dtype_bytes=2):
    return kv_cache_bytes(config, seq_len, batch_size, dtype_bytes) * 8


def _kv_window_ignored(config, seq_len, batch_size=1, dtype_bytes=2):
    return kv_cache_bytes(_without(config, "sliding_window"), seq_len, batch_size, dtype_bytes)


def _kv_head_dim_from_hidden(config, seq_len, batch_size=1, dtype_bytes=2):
    return kv_cache_bytes(_without(config, "head_dim"), seq_len, batch_size, dtype_bytes)


def _kv_batch_ignored(config, seq_len, batch_size=1, dtype_bytes=2):
    return kv_cache_bytes(config, seq_len, 1, dtype_bytes)


def _kv_every_layer(config, seq_len, batch_size=1, dtype_bytes=2):
    plain = _without(config, "attn_layer_period", "attn_layer_offset", "layers_block_type")
    if layer_kinds(config).count("attention") == 0:
        return 0
    return kv_cache_bytes(plain, seq_len, batch_size, dtype_bytes)


def _mla(config):
    return layer_kinds(config).count("attention") if "kv_lora_rank" in dict(config) else 0


def _kv_mla_two_latents(config, seq_len, batch_size=1, dtype_bytes=2):
    return kv_cache_bytes(config, seq_len, batch_size, dtype_bytes) * (2 if _mla(config) else 1)


def _kv_mla_rope_forgotten(config, seq_len, batch_size=1, dtype_bytes=2):
    return kv_cache_bytes(_without(config, "qk_rope_head_dim") if _mla(config) else config, seq_len, batch_size,
                          dtype_bytes)


def _kv_mla_as_heads(config, seq_len, batch_size=1, dtype_bytes=2):
    if not _mla(config):
        return kv_cache_bytes(config, seq_len, batch_size, dtype_bytes)
    c = dict(config)
    heads = int(c.get("num_key_value_heads") or c["num_attention_heads"])
    head_dim = int(c["qk_nope_head_dim"]) + int(c["qk_rope_head_dim"])
    return _mla(config) * 2 * heads * head_dim * seq_len * batch_size * dtype_bytes


def _state_no_conv(config, batch_size=1, dtype_bytes=2):
    full = mamba_state_bytes(config, batch_size, dtype_bytes)
    if full == 0:
        return 0
    _, d_state, d_conv = mamba_dims(config)
    return full * d_state // (d_state + d_conv)


def _state_d_model(config, batch_size=1, dtype_bytes=2):
    full = mamba_state_bytes(config, batch_size, dtype_bytes)
    if full == 0:
        return 0
    d_inner, _, _ = mamba_dims(config)
    hidden = dict(config).get("hidden_size")
    return full * int(hidden) // d_inner


def _state_intermediate_ignored(config, batch_size=1, dtype_bytes=2):
    return mamba_state_bytes(_without(config, "intermediate_size"), batch_size, dtype_bytes)


def _state_bits(config, batch_size=1, dtype_bytes=2):
    return mamba_state_bytes(config, batch_size, dtype_bytes) * 8


def _state_batch_ignored(config, batch_size=1, dtype_bytes=2):
    return mamba_state_bytes(config, 1, dtype_bytes)


def _state_mamba1_formula(config, batch_size=1, dtype_bytes=2):
    return mamba_state_bytes(_without(config, "n_groups") | {"model_type": "mamba"}, batch_size, dtype_bytes) \
        if dict(config).get("model_type") == "mamba2" else mamba_state_bytes(config, batch_size, dtype_bytes)


MISCONCEPTIONS = [
    Misconception("K and V not both counted", "kv_cache_bytes",
                  "Every attention layer caches a key AND a value vector per token and KV head: the factor 2 in "
                  "2 * layers * kv_heads * head_dim * tokens * bytes.", _kv_no_factor_2),
    Misconception("query heads instead of KV heads", "kv_cache_bytes",
                  "With grouped-query or multi-query attention only num_key_value_heads heads are cached (the query "
                  "heads share them): Mixtral caches 8 heads, not 32.", _kv_query_heads),
    Misconception("bits instead of bytes", "kv_cache_bytes",
                  "dtype_bytes is already bytes per element (bf16: 2); multiplying by 8 gives bits.", _kv_bits),
    Misconception("sliding window ignored", "kv_cache_bytes",
                  "A layer with a sliding window keeps at most sliding_window tokens: the cache stops growing there "
                  "(unless use_sliding_window is False).", _kv_window_ignored),
    Misconception("head_dim taken as hidden_size / heads", "kv_cache_bytes",
                  "When the config sets head_dim, use it: heads x head_dim need not equal hidden_size (Gemma).",
                  _kv_head_dim_from_hidden),
    Misconception("batch size ignored", "kv_cache_bytes",
                  "Each sequence of the batch has its own cache: multiply by batch_size.", _kv_batch_ignored),
    Misconception("every layer of a hybrid counted", "kv_cache_bytes",
                  "In a hybrid such as Jamba only the attention layers (one in attn_layer_period) keep a KV cache; "
                  "the Mamba layers keep a fixed state instead.", _kv_every_layer),
    Misconception("MLA latent counted for K and V", "kv_cache_bytes",
                  "Multi-head latent attention caches ONE compressed latent (kv_lora_rank) from which both K and V "
                  "are rebuilt, plus the shared rope key: no factor 2.", _kv_mla_two_latents),
    Misconception("MLA rope key forgotten", "kv_cache_bytes",
                  "Besides the latent of kv_lora_rank, MLA caches the decoupled rope key of qk_rope_head_dim per "
                  "token and layer: (kv_lora_rank + qk_rope_head_dim) values.", _kv_mla_rope_forgotten),
    Misconception("MLA counted as full K and V heads", "kv_cache_bytes",
                  "MLA does not cache per-head keys and values (that is what it saves): it caches kv_lora_rank + "
                  "qk_rope_head_dim values per token and layer, whatever the number of heads.", _kv_mla_as_heads),
    Misconception("convolution state forgotten", "mamba_state_bytes",
                  "Besides the SSM state (d_inner x d_state) each layer keeps the last d_conv inputs of its causal "
                  "convolution: d_inner x (d_state + d_conv).", _state_no_conv),
    Misconception("d_model used instead of d_inner", "mamba_state_bytes",
                  "The state lives in the expanded inner dimension d_inner = expand x hidden_size (or "
                  "intermediate_size), not in hidden_size.", _state_d_model),
    Misconception("intermediate_size ignored", "mamba_state_bytes",
                  "When the config sets intermediate_size it is d_inner; expand x hidden_size is only the default.",
                  _state_intermediate_ignored),
    Misconception("bits instead of bytes", "mamba_state_bytes",
                  "dtype_bytes is already bytes per element (bf16: 2); multiplying by 8 gives bits.", _state_bits),
    Misconception("batch size ignored", "mamba_state_bytes",
                  "Each sequence of the batch has its own state: multiply by batch_size.", _state_batch_ignored),
    Misconception("Mamba-1 formula for Mamba-2", "mamba_state_bytes",
                  "Mamba-2's convolution also runs over the B and C channels: per layer d_inner x d_state + "
                  "(d_inner + 2 x n_groups x d_state) x d_conv.", _state_mamba1_formula),
]

# The course's answers (diagnosis names a mutant only where it differs from them).
REFERENCES = {"kv_cache_bytes": kv_cache_bytes, "mamba_state_bytes": mamba_state_bytes}
