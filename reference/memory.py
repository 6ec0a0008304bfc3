"""Memory maths of the labs' models: KV cache, SSM state, parameter counts and prefill FLOPs, from a model's config.

Config fields are read by reference.model_config (re-exported here: field, num_layers, hidden_size, layer_kinds...).
A config is a Hugging Face config object (``PretrainedConfig``) or a plain dict of its fields (a ``config.json``).
Field names are transformers' (``num_hidden_layers``, ``hidden_size``, ``num_attention_heads``,
``num_key_value_heads``, ``head_dim``, ``intermediate_size``, ``state_size``, ``conv_kernel``, ``expand`` ...);
the older GPT-2 / original-Mamba spellings (``n_layer``, ``n_embd``/``d_model``, ``n_head``, ``d_state``, ``d_conv``)
are read too.

Equations (bytes; b = batch, L = tokens held, s = bytes per element):

    KV cache     = 2 * attention_layers * kv_heads * head_dim * L * b * s        GQA: kv_heads <= heads
                   MLA (DeepSeek-V2): attention_layers * (kv_lora_rank + qk_rope_head_dim) * L * b * s
                   sliding window: L is capped at the window, layer by layer (``layer_types``)
    Mamba state  = mamba_layers * d_inner * (d_state + d_conv) * b * s           constant in L
                   d_inner = intermediate_size, or expand * hidden_size
    prefill      >= 2 * matmul params * L  +  attention_layers * L^2 * heads * (qk_dim + v_dim)     (causal)

Checks (docs/facts.md, "The models the labs name"):
Mixtral-8x7B holds 128 KiB of KV cache per token in bf16; mamba-2.8b's decode state is 13.1 MB.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reference.model_config import (
    _cached_tokens_per_layer,
    _head_dim,
    _heads,
    _is_mla,
    _kv_heads,
    field,
    hidden_size,
    is_pure_ssm,
    layer_kinds,
    model_type,
    num_layers,
)

# Bytes per element of the dtypes a benchmark may name. 4-bit formats are 0.5 (their scales are left out: a floor).
DTYPE_BYTES: dict[str, float] = {
    "fp32": 4,
    "tf32": 4,
    "bf16": 2,
    "fp16": 2,
    "fp8": 1,
    "int8": 1,
    "int4": 0.5,
    "nf4": 0.5,
    "fp4": 0.5,
}

_DTYPE_ALIASES = {
    "float32": "fp32",
    "float": "fp32",
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
    "float8": "fp8",
    "float8_e4m3fn": "fp8",
    "float8_e5m2": "fp8",
    "e4m3": "fp8",
    "mxfp4": "fp4",
    "nvfp4": "fp4",
    "4bit": "nf4",
    "8bit": "int8",
    "qint8": "int8",
    "uint4": "int4",
}


def normalize_dtype(name: str) -> str:
    """Canonical dtype name ('torch.bfloat16' -> 'bf16'); ValueError listing the known names otherwise."""
    key = name.strip().lower().removeprefix("torch.")
    key = _DTYPE_ALIASES.get(key, key)
    if key not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {name!r}; use one of {', '.join(DTYPE_BYTES)}")
    return key


def dtype_bytes(name: str) -> float:
    return DTYPE_BYTES[normalize_dtype(name)]

# ---------------------------------------------------------------------------------------------------------------
# Cache and state


def kv_cache_bytes(config: Any, seq_len: int, batch_size: int = 1, dtype_bytes: float = 2) -> int:
    """Bytes of KV cache for ``seq_len`` tokens of ``batch_size`` sequences; 0 for a pure SSM.

    Only attention layers count (a Jamba-like hybrid's Mamba layers hold state instead, see mamba_state_bytes).
    MLA models (DeepSeek-V2) count the compressed latent cache, the smallest form the model can be served with.
    """
    tokens = sum(_cached_tokens_per_layer(config, seq_len))  # summed over the attention layers
    if tokens == 0:
        return 0
    if _is_mla(config):
        per_layer_token = int(field(config, "kv_lora_rank")) + int(field(config, "qk_rope_head_dim", default=0))
    else:
        per_layer_token = 2 * _kv_heads(config) * _head_dim(config)
    return int(per_layer_token * tokens * batch_size * dtype_bytes)


def kv_cache_bytes_per_token(config: Any, dtype_bytes: float = 2) -> int:
    """KV bytes one more token adds (one sequence): Mixtral-8x7B in bf16 is 128 KiB."""
    return kv_cache_bytes(config, 1, 1, dtype_bytes)


def mamba_dims(config: Any) -> tuple[int, int, int]:
    """(d_inner, d_state, d_conv) of a Mamba layer, from Mamba or Jamba field names."""
    d_state = int(field(config, "state_size", "d_state", "mamba_d_state", default=16))
    d_conv = int(field(config, "conv_kernel", "d_conv", "mamba_d_conv", default=4))
    if is_pure_ssm(config):
        d_inner = field(config, "intermediate_size", "d_inner", default=None)
        expand = field(config, "expand", default=2)
    else:  # hybrid: intermediate_size is the MLP's, the mixer has its own expand
        d_inner = field(config, "mamba_d_inner", default=None)
        expand = field(config, "mamba_expand", "expand", default=2)
    if d_inner is None:
        d_inner = int(expand * hidden_size(config))
    return int(d_inner), d_state, d_conv


def mamba_state_bytes(config: Any, batch_size: int = 1, dtype_bytes: float = 2) -> int:
    """Bytes of decode state (SSM state + conv window) per the whole model; independent of the context length.

    Mamba-1: layers * d_inner * (d_state + d_conv) * batch * bytes (mamba-2.8b in bf16: 13.1 MB).
    Mamba-2: the SSM state is d_inner * d_state per layer and the conv window also covers the B and C channels
    (d_inner + 2 * n_groups * d_state).
    """
    layers = layer_kinds(config).count("mamba")
    if layers == 0:
        return 0
    d_inner, d_state, d_conv = mamba_dims(config)
    if model_type(config) == "mamba2" or field(config, "n_groups", default=None) is not None:
        conv_channels = d_inner + 2 * int(field(config, "n_groups", default=1)) * d_state
        per_layer = d_inner * d_state + conv_channels * d_conv
    else:
        per_layer = d_inner * (d_state + d_conv)
    return int(layers * per_layer * batch_size * dtype_bytes)


# ---------------------------------------------------------------------------------------------------------------
# Parameter counts


@dataclass(frozen=True)
class ParamCounts:
    """Parameters of a model: all of them, those one token uses, and the embedding tables among them."""

    total: int
    active: int
    embedding: int  # input embedding table
    lm_head: int  # output projection; 0 when tied to the embedding
    tied: bool

    @property
    def read_per_token(self) -> int:
        """Weights one decode step reads: all active ones but the input table (one row of it is read)."""
        return self.active - (0 if self.tied else self.embedding)

    @property
    def matmul_active(self) -> int:
        """Active weights that multiply every prompt token in prefill (logits are computed for the last one only)."""
        return self.active - self.embedding - self.lm_head


def _attention_params(config: Any) -> int:
    h = hidden_size(config)
    heads = _heads(config)
    if _is_mla(config):  # DeepSeek-V2 multi-head latent attention
        nope = int(field(config, "qk_nope_head_dim"))
        rope = int(field(config, "qk_rope_head_dim"))
        v_dim = int(field(config, "v_head_dim"))
        kv_rank = int(field(config, "kv_lora_rank"))
        q_rank = field(config, "q_lora_rank", default=None)
        q = h * heads * (nope + rope) if q_rank is None else h * q_rank + q_rank + q_rank * heads * (nope + rope)
        kv = h * (kv_rank + rope) + kv_rank + kv_rank * heads * (nope + v_dim)
        return q + kv + heads * v_dim * h
    hd = _head_dim(config)
    kv = _kv_heads(config)
    weights = h * heads * hd + 2 * h * kv * hd + heads * hd * h
    bias = field(config, "attention_bias", default=None)
    if bias is None:  # Qwen2 family always has q/k/v biases; GPT-NeoX and the two-matrix families bias everything
        bias = model_type(config) in {"qwen2", "qwen2_moe"} or _two_matrix_bias(config)
    if bias:
        weights += heads * hd + 2 * kv * hd + (h if model_type(config) in _TWO_MATRIX_MLP else 0)
    return weights


def _mamba_mixer_params(config: Any) -> int:
    h = hidden_size(config)
    d_inner, d_state, d_conv = mamba_dims(config)
    rank = field(config, "time_step_rank", "dt_rank", "mamba_dt_rank", default="auto")
    dt_rank = math.ceil(h / 16) if rank == "auto" else int(rank)
    use_bias = bool(field(config, "use_bias", "mamba_proj_bias", default=False))
    conv_bias = bool(field(config, "use_conv_bias", "mamba_conv_bias", default=True))
    return (
        h * 2 * d_inner
        + (2 * d_inner if use_bias else 0)
        + d_inner * d_conv
        + (d_inner if conv_bias else 0)
        + d_inner * (dt_rank + 2 * d_state)
        + dt_rank * d_inner
        + d_inner
        + d_inner * d_state
        + d_inner
        + d_inner * h
        + (h if use_bias else 0)
    )


def _num_experts(config: Any) -> int:
    return int(field(config, "num_local_experts", "num_experts", "n_routed_experts", default=0))


def _is_moe_layer(config: Any, i: int) -> bool:
    if _num_experts(config) <= 1:
        return False
    if i < int(field(config, "first_k_dense_replace", default=0)):
        return False
    if i in set(field(config, "mlp_only_layers", default=[]) or []):
        return False
    if model_type(config) == "jamba" or field(config, "expert_layer_period", default=None) is not None:
        period = int(field(config, "expert_layer_period", default=1))
        return i % period == int(field(config, "expert_layer_offset", default=0))
    if (i + 1) % int(field(config, "decoder_sparse_step", default=1)) != 0:
        return False
    return i % int(field(config, "moe_layer_freq", default=1)) == 0


# Model types whose MLP is two matrices (up, activation, down) rather than a gated three (gate, up, down), with
# whether their linear layers carry biases when the config does not say. From each family's transformers modelling
# code: GPT-J fc_in/fc_out, GPT-2 c_fc/c_proj, OPT fc1/fc2, BLOOM dense_h_to_4h/dense_4h_to_h, Falcon (bias=False by
# default), Phi-1/2 fc1/fc2, StarCoder2 c_fc/c_proj, MPT up_proj/down_proj (no_bias).
_TWO_MATRIX_MLP: dict[str, bool] = {
    "gpt_neox": True,
    "gptj": True,
    "gpt2": True,
    "gpt_bigcode": True,
    "gpt_neo": True,
    "codegen": True,
    "opt": True,
    "bloom": True,
    "falcon": False,
    "phi": True,
    "starcoder2": True,
    "mpt": False,
}
# Families whose position embeddings are a learned table (rows = positions; OPT keeps 2 extra rows).
_LEARNED_POSITIONS = {"gpt2": 0, "gpt_bigcode": 0, "gpt_neo": 0, "opt": 2}


def _two_matrix_bias(config: Any) -> bool:
    mtype = model_type(config)
    if mtype not in _TWO_MATRIX_MLP:
        return False
    if field(config, "no_bias", default=None) is not None:  # MPT
        return not field(config, "no_bias")
    return bool(field(config, "enable_bias", "bias", "use_bias", default=_TWO_MATRIX_MLP[mtype]))


def _dense_ffn_params(config: Any) -> int:
    h = hidden_size(config)
    if model_type(config) in _TWO_MATRIX_MLP:
        ratio = field(config, "expansion_ratio", default=None)  # MPT
        ffn = int(ratio * h) if ratio else int(
            field(config, "intermediate_size", "ffn_dim", "n_inner", "ffn_hidden_size", default=4 * h))
        return 2 * h * ffn + ((ffn + h) if _two_matrix_bias(config) else 0)
    ffn = int(field(config, "intermediate_size", "ffn_dim", "n_inner", default=4 * h))
    return 3 * h * ffn


@dataclass(frozen=True)
class MoELayer:
    """One mixture-of-experts block: routed experts (each ``expert`` parameters), top-k, shared experts, router."""

    experts: int
    top_k: int
    expert: int
    shared: int
    router: int

    @property
    def total(self) -> int:
        return self.experts * self.expert + self.shared + self.router

    @property
    def active(self) -> int:
        return self.top_k * self.expert + self.shared + self.router


def distinct_experts(experts: int, top_k: int, tokens: int) -> float:
    """Expected number of distinct experts ``tokens`` tokens route to: E (1 - (1 - k/E)^tokens).

    Each token picks k of E experts; under uniform routing an expert stays idle for one token with probability
    1 - k/E, for all of them with (1 - k/E)^tokens. One token touches exactly k.
    """
    k = max(0, min(top_k, experts))  # a config's nonsense (negative k) must not overflow the power below
    if tokens <= 1 or experts <= k:
        return float(k)
    return experts * (1.0 - (1.0 - k / experts) ** tokens)


def _moe_layer(config: Any) -> MoELayer:
    h = hidden_size(config)
    experts = _num_experts(config)
    top_k = int(field(config, "num_experts_per_tok", "top_k", default=2))
    expert_ffn = int(field(config, "moe_intermediate_size", "intermediate_size"))
    shared_ffn = int(field(config, "shared_expert_intermediate_size", default=0))
    if not shared_ffn:
        shared_ffn = int(field(config, "n_shared_experts", default=0) or 0) * expert_ffn
    shared = 3 * h * shared_ffn
    if field(config, "shared_expert_intermediate_size", default=None):  # Qwen2-MoE's sigmoid gate on the shared expert
        shared += h
    return MoELayer(experts, top_k, 3 * h * expert_ffn, shared, h * experts)


def moe_layers(config: Any) -> list[MoELayer]:
    """The MoE blocks of a model, one per MoE layer (empty for a dense model)."""
    return [_moe_layer(config) for i in range(num_layers(config)) if _is_moe_layer(config, i)]


def routed_expert_params_read(config: Any, tokens: int) -> float:
    """Routed-expert parameters one forward pass over ``tokens`` tokens reads (each distinct expert once)."""
    return sum(m.expert * distinct_experts(m.experts, m.top_k, tokens) for m in moe_layers(config))


def _ffn_params(config: Any, i: int) -> tuple[int, int]:
    """(total, active) parameters of layer i's feed-forward block."""
    if not _is_moe_layer(config, i):
        n = _dense_ffn_params(config)
        return n, n
    moe = _moe_layer(config)
    return moe.total, moe.active


# Which weights a quantised checkpoint leaves unquantised, by the module names of its quantization_config.
_ROLE_PATTERNS = (("attn", "mixer"), ("attention", "mixer"), ("mixer", "mixer"), ("router", "router"),
                  ("shared_expert", "shared"), ("embed", "lm_head"), ("wte", "lm_head"), ("lm_head", "lm_head"))


def active_params_by_role(config: Any) -> dict[str, int]:
    """Parameters one decode step reads, by role: mixer (attention/Mamba and norms), dense_mlp, shared, router,
    experts (top-k routed) and lm_head (the output table, tied or not; the input table is read one row a token)."""
    roles = dict.fromkeys(("mixer", "dense_mlp", "shared", "router", "experts", "lm_head"), 0)
    for i, kind in enumerate(layer_kinds(config)):
        roles["mixer"] += _mamba_mixer_params(config) if kind == "mamba" else _attention_params(config)
        if kind == "mamba" and is_pure_ssm(config):
            continue
        if _is_moe_layer(config, i):
            moe = _moe_layer(config)
            roles["shared"] += moe.shared
            roles["router"] += moe.router
            roles["experts"] += moe.top_k * moe.expert
        else:
            roles["dense_mlp"] += _dense_ffn_params(config)
    roles["lm_head"] = int(field(config, "vocab_size")) * hidden_size(config)
    return roles


def unquantised_roles(config: Any) -> set[str]:
    """Roles a quantised checkpoint keeps at 16 bits, from its own ``quantization_config``.

    gpt-oss (MXFP4) lists its attention, router, embeddings and lm_head in ``modules_to_not_convert``; bitsandbytes
    names ``llm_int8_skip_modules``, compressed-tensors ``ignore``. Without such a list: none (a floor on the bytes).
    """
    q = field(config, "quantization_config", default=None)
    if not isinstance(q, Mapping):
        return set()
    names: list[str] = []
    for key in ("modules_to_not_convert", "llm_int8_skip_modules", "ignore"):
        value = q.get(key)
        if isinstance(value, list | tuple):
            names += [str(v).lower() for v in value]
    return {role for name in names for pattern, role in _ROLE_PATTERNS if pattern in name}


def unquantised_params_read(config: Any) -> int:
    """Parameters of one decode step that a quantised checkpoint reads at 16 bits (see unquantised_roles)."""
    roles = unquantised_roles(config)
    return sum(n for role, n in active_params_by_role(config).items() if role in roles) if roles else 0


def estimate_params(config: Any) -> ParamCounts:
    """Parameters from the config alone (norm weights counted, small extras such as q/k norms left out).

    Matches transformers' own counts for Llama, GPT-NeoX (Pythia), Mamba, Mixtral, Qwen2-MoE, OLMoE, DeepSeek-V2
    and Jamba configs to well under 1 % (tests/test_hardware_memory.py).
    """
    h = hidden_size(config)
    vocab = int(field(config, "vocab_size"))
    mtype = model_type(config)
    default_tied = mtype in {"mamba", "mamba2", "falcon_mamba"} or (is_pure_ssm(config) and mtype == "")
    tied = bool(field(config, "tie_word_embeddings", "tie_embeddings", default=default_tied))
    norm = 2 * h if mtype in _TWO_MATRIX_MLP else h  # LayerNorm has a bias; RMSNorm does not
    total = active = 0
    for i, kind in enumerate(layer_kinds(config)):
        if kind == "mamba":
            mixer = _mamba_mixer_params(config)
            if is_pure_ssm(config):  # a Mamba block is mixer + one norm, no MLP
                total += mixer + norm
                active += mixer + norm
                continue
        else:
            mixer = _attention_params(config)
        ffn_total, ffn_active = _ffn_params(config, i)
        total += mixer + ffn_total + 2 * norm
        active += mixer + ffn_active + 2 * norm
    embedding = vocab * h
    offset = _LEARNED_POSITIONS.get(mtype)
    if offset is not None:  # a learned position table is an input embedding too (one row read per token)
        embedding += (int(field(config, "n_positions", "max_position_embeddings", default=0)) + offset) * h
    lm_head = 0 if tied else vocab * h
    rest = embedding + lm_head + norm
    return ParamCounts(total=total + rest, active=active + rest, embedding=embedding, lm_head=lm_head, tied=tied)


# ---------------------------------------------------------------------------------------------------------------
# Compute


def attention_flops(config: Any, seq_len: int, batch_size: int = 1) -> float:
    """FLOPs of causal self-attention scores and mixing over a prompt (QK^T and AV, half the square each)."""
    per_layer = _cached_tokens_per_layer(config, seq_len)
    if not per_layer:
        return 0.0
    heads = _heads(config)
    if _is_mla(config):
        qk_dim = int(field(config, "qk_nope_head_dim")) + int(field(config, "qk_rope_head_dim"))
        v_dim = int(field(config, "v_head_dim"))
    else:
        qk_dim = v_dim = _head_dim(config)
    # Each query attends to min(position, window) keys: seq_len * tokens minus the causal half, layer by layer.
    pairs = sum(seq_len * tokens - tokens * tokens / 2 for tokens in per_layer)
    return float(batch_size * pairs * heads * (qk_dim + v_dim) * 2)


def prefill_flops(config: Any, params: ParamCounts, seq_len: int, batch_size: int = 1) -> float:
    """A floor on the FLOPs of a prefill: every active matmul weight once per prompt token, plus attention."""
    return 2.0 * params.matmul_active * seq_len * batch_size + attention_flops(config, seq_len, batch_size)
