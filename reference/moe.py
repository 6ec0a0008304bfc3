"""Counting for Mixture-of-Experts models: expert activations and parameters.

expert_activation_counts   how many top-k slots chose each expert, per layer
moe_param_counts           total and active (per-token) parameters of an MoE config (Mixtral, Qwen2/3-MoE, OLMoE,
                           DeepSeekMoE, DeepSeek-V2/V3), computed from the config alone (never instantiates the model)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AutoConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from reference.routing import top_k_routing

SUPPORTED_MODEL_TYPES = ("mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek", "deepseek_v2", "deepseek_v3")
# DeepSeekMoE (model_type "deepseek", e.g. deepseek-moe-16b) ships its own modelling code and has no transformers
# class: its config arrives as a plain dict (config.json) or a remote-code config object. Its defaults, from the
# checkpoint's configuration_deepseek.py, for fields a config.json may leave out:
_DEEPSEEK_DEFAULTS = {"n_shared_experts": None, "first_k_dense_replace": 0, "moe_layer_freq": 1,
                      "attention_bias": False, "tie_word_embeddings": False, "num_key_value_heads": None}
_DEEPSEEK_FAMILY = ("deepseek", "deepseek_v2", "deepseek_v3")


class ConfigFields:
    """Attribute access to a config given as an object or as a dict of its fields (config.json). A dict of a
    model_type transformers knows becomes its config class (which fills in the defaults config.json leaves out)."""

    def __init__(self, config: Any):
        if isinstance(config, Mapping) and config.get("model_type") in CONFIG_MAPPING:
            fields = {k: v for k, v in config.items() if k != "model_type"}
            config = AutoConfig.for_model(config["model_type"], **fields)
        self._config = config

    def get(self, name: str, default: Any = None) -> Any:
        if isinstance(self._config, Mapping):
            return self._config.get(name, default)
        return getattr(self._config, name, default)

    def __getattr__(self, name: str) -> Any:
        missing = object()
        value = self.get(name, missing)
        if value is missing:
            model_type = self.get("model_type")
            if model_type == "deepseek" and name in _DEEPSEEK_DEFAULTS:
                return _DEEPSEEK_DEFAULTS[name]
            raise AttributeError(f"the {model_type} config has no field {name!r}")
        return value


def expert_activation_counts(router_logits: torch.Tensor | Sequence[torch.Tensor], top_k: int) -> torch.Tensor:
    """Count, per layer, the top-k slots that chose each expert.

    Shapes: router_logits a tuple/list of per-layer (tokens, E) tensors (leading dimensions such as (batch, seq)
    are flattened into tokens), or one (layers, tokens, E) tensor; a single 2-D (tokens, E) tensor is one layer.
    Returns a (layers, E) int64 tensor on the logits' device; each row sums to tokens * top_k.
    Selection is ``top_k_routing``'s: top-k of the fp32 softmax.
    """
    if isinstance(router_logits, torch.Tensor):
        if router_logits.dim() == 2:
            layers: list[torch.Tensor] = [router_logits]
        elif router_logits.dim() == 3:
            layers = list(router_logits.unbind(0))
        else:
            raise ValueError(
                f"router_logits tensor must be (layers, tokens, E) or (tokens, E), got {tuple(router_logits.shape)}"
            )
    else:
        layers = list(router_logits)
    if not layers:
        raise ValueError("router_logits is empty: pass at least one layer")
    num_experts = layers[0].shape[-1]
    rows = []
    for layer in layers:
        _, experts = top_k_routing(layer.reshape(-1, num_experts), top_k)
        rows.append(torch.bincount(experts.reshape(-1), minlength=num_experts))
    return torch.stack([row.to(layers[0].device) for row in rows])


def _head_dim(config: Any) -> int:
    return int(config.get("head_dim") or config.hidden_size // config.num_attention_heads)


def _mla_attention_params(config: Any) -> int:
    """DeepSeek-V2/V3 Multi-head Latent Attention of one layer, as transformers' DeepseekV2/V3Attention builds it.

    q: q_proj h -> H*(d_nope + d_rope), or with q_lora_rank r_q: q_a_proj h -> r_q, its RMSNorm r_q, q_b_proj
    r_q -> H*(d_nope + d_rope); kv_a_proj_with_mqa h -> r_kv + d_rope; kv_a_layernorm r_kv; kv_b_proj
    r_kv -> H*(d_nope + d_v); o_proj H*d_v -> h. attention_bias adds biases to q_a, kv_a and o.
    """
    h: int = config.hidden_size
    n_heads: int = config.num_attention_heads
    qk_head = config.qk_nope_head_dim + config.qk_rope_head_dim
    bias = bool(config.get("attention_bias", False))
    q_rank, kv_rank = config.get("q_lora_rank"), config.kv_lora_rank
    if q_rank:
        params = h * q_rank + bias * q_rank + q_rank + q_rank * n_heads * qk_head
    else:
        params = h * n_heads * qk_head
    params += h * (kv_rank + config.qk_rope_head_dim) + bias * (kv_rank + config.qk_rope_head_dim)
    params += kv_rank + kv_rank * n_heads * (config.qk_nope_head_dim + config.v_head_dim)
    params += n_heads * config.v_head_dim * h + bias * h
    return int(params)


def _attention_params(config: Any, model_type: str) -> int:
    """Attention of one decoder layer (+ biases, q/k norms), as each modelling file builds it."""
    if model_type in ("deepseek_v2", "deepseek_v3"):
        return _mla_attention_params(config)
    h: int = config.hidden_size
    n_heads: int = config.num_attention_heads
    n_kv: int = config.get("num_key_value_heads") or n_heads
    hd = _head_dim(config)
    q_out, kv_out = n_heads * hd, n_kv * hd
    params = h * q_out + 2 * h * kv_out + q_out * h
    if model_type == "qwen2_moe":
        if config.get("qkv_bias", True):  # transformers 4.x hard-codes the q/k/v biases; 5.x reads qkv_bias
            params += q_out + 2 * kv_out
    elif model_type in ("qwen3_moe", "olmoe", "deepseek") and config.get("attention_bias", False):
        params += q_out + 2 * kv_out + h
    if model_type == "qwen3_moe":
        params += 2 * hd  # q_norm, k_norm over head_dim
    elif model_type == "olmoe":
        params += h + (h // n_heads) * n_kv  # q_norm over all q features, k_norm over all k features
    return params


def _is_sparse_layer(config: Any, model_type: str, layer_idx: int) -> bool:
    if model_type in ("mixtral", "olmoe"):
        return True
    if model_type in _DEEPSEEK_FAMILY:
        # DeepSeek's own modelling code: MoE from layer first_k_dense_replace on, every moe_layer_freq-th layer.
        # (transformers' native DeepseekV2/V3 read only first_k_dense_replace; every published config has freq 1.)
        return (
            config.get("n_routed_experts") is not None
            and layer_idx >= (config.get("first_k_dense_replace") or 0)
            and layer_idx % (config.get("moe_layer_freq") or 1) == 0
        )
    # Qwen2-MoE / Qwen3-MoE: dense MLP in mlp_only_layers and off the decoder_sparse_step grid.
    return (
        layer_idx not in (config.mlp_only_layers or [])
        and config.num_experts > 0
        and (layer_idx + 1) % config.decoder_sparse_step == 0
    )


def _experts(config: Any, model_type: str) -> tuple[int, int]:
    """(routed experts E, intermediate size F of one routed expert)."""
    if model_type == "mixtral":
        return config.num_local_experts, config.intermediate_size
    if model_type == "olmoe":
        return config.num_experts, config.intermediate_size
    if model_type in _DEEPSEEK_FAMILY:
        return config.n_routed_experts or 0, config.moe_intermediate_size
    return config.num_experts, config.moe_intermediate_size


def _shared_params(config: Any, model_type: str) -> int:
    """Always-active shared experts of one sparse layer (Qwen2-MoE: one, with a sigmoid gate; DeepSeek: n_shared
    experts of moe_intermediate_size fused into one MLP)."""
    h = config.hidden_size
    if model_type == "qwen2_moe":
        return int(3 * h * config.shared_expert_intermediate_size + h)
    if model_type in _DEEPSEEK_FAMILY and config.get("n_shared_experts"):
        width = config.moe_intermediate_size * config.n_shared_experts
        mlp_bias = model_type == "deepseek_v2" and config.get("mlp_bias", False)
        return int(3 * h * width + mlp_bias * (2 * width + h))
    return 0


def _dense_mlp_params(config: Any, model_type: str) -> int:
    h, width = config.hidden_size, config.intermediate_size
    mlp_bias = model_type == "deepseek_v2" and config.get("mlp_bias", False)
    return int(3 * h * width + mlp_bias * (2 * width + h))


@dataclass(frozen=True)
class MoeLayout:
    """The pieces of an MoE causal LM that its parameter counts add up (sizes in parameters)."""

    model_type: str
    hidden_size: int
    sparse_layers: tuple[int, ...]  # indices of the layers with an MoE MLP
    dense_layers: tuple[int, ...]  # indices of the layers with a dense MLP
    n_experts: int  # routed experts per sparse layer (E)
    top_k: int  # routed experts per token (k)
    expert_params: int  # one routed expert: 3*h*F
    router_params: int  # one sparse layer's router: E*h
    shared_params: int  # one sparse layer's always-active shared expert(s) (+ Qwen2-MoE's gate)
    dense_mlp_params: int  # one dense layer's MLP
    attention_params: int  # one layer's attention (+ its two RMSNorms)
    embeddings: int  # the embedding table V*h
    tied: bool  # lm_head is the embedding table


def moe_layout(config: Any) -> MoeLayout:
    """The layout of an MoE config (object or dict of its fields); see moe_param_counts for the supported types."""
    c = ConfigFields(config)
    model_type = c.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"moe_param_counts does not know model_type {model_type!r}; supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    h = c.hidden_size
    n_experts, expert_ffn = _experts(c, model_type)
    sparse = tuple(i for i in range(c.num_hidden_layers) if _is_sparse_layer(c, model_type, i))
    return MoeLayout(
        model_type=model_type,
        hidden_size=h,
        sparse_layers=sparse,
        dense_layers=tuple(i for i in range(c.num_hidden_layers) if i not in sparse),
        n_experts=n_experts,
        top_k=c.num_experts_per_tok,
        expert_params=3 * h * expert_ffn,  # gate, up (stored fused as gate_up_proj) and down, no biases
        router_params=n_experts * h,
        shared_params=_shared_params(c, model_type),
        dense_mlp_params=_dense_mlp_params(c, model_type) if len(sparse) < c.num_hidden_layers else 0,
        attention_params=2 * h + _attention_params(c, model_type),
        embeddings=c.vocab_size * h,
        tied=bool(c.get("tie_word_embeddings", False)),
    )


def moe_param_counts(config: Any) -> dict[str, int]:
    """Total and active parameters of an MoE causal LM, from its config only (an object or a dict of its fields).

    ``total`` equals ``sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())``: tied
    embeddings count once, and router weights, norms, biases and shared experts are included. DeepSeek-V3's
    router bias (e_score_correction_bias, E per layer) is a buffer in transformers and is not counted, nor is its
    multi-token-prediction module (num_nextn_predict_layers), which transformers does not build. ``active`` is what
    one token uses: total minus the (E - k) routed experts it skips in every sparse layer; embeddings, attention,
    routers, shared experts and dense layers always count.

    Supported model_type: mixtral, qwen2_moe, qwen3_moe, olmoe, deepseek (DeepSeekMoE, remote code), deepseek_v2,
    deepseek_v3. Per layer:
        attention  q, k, v, o (+ biases; + q/k norms for qwen3_moe and olmoe); DeepSeek-V2/V3: MLA (low-rank q and
                   kv projections with their norms); 2 RMSNorms of hidden_size
        sparse MLP router E*h + E experts of 3*h*F (+ qwen2_moe shared expert 3*h*F_shared + gate h; + DeepSeek
                   n_shared_experts shared experts, 3*h*(n_shared*moe_intermediate_size))
        dense MLP  3*h*intermediate_size (qwen2_moe / qwen3_moe mlp_only_layers or decoder_sparse_step; DeepSeek's
                   first first_k_dense_replace layers and layers off the moe_layer_freq grid)
    plus embeddings V*h, the final norm h, and lm_head V*h unless tie_word_embeddings.
    """
    m = moe_layout(config)
    layers = len(m.sparse_layers) + len(m.dense_layers)
    total = m.embeddings * (1 if m.tied else 2) + m.hidden_size  # embed_tokens (+ lm_head) + final norm
    total += layers * m.attention_params + len(m.dense_layers) * m.dense_mlp_params
    total += len(m.sparse_layers) * (m.router_params + m.n_experts * m.expert_params + m.shared_params)
    skipped = len(m.sparse_layers) * (m.n_experts - m.top_k) * m.expert_params
    return {"total": total, "active": total - skipped}
