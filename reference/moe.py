"""Counting for Mixture-of-Experts models: expert activations and parameters.

expert_activation_counts   how many top-k slots chose each expert, per layer
moe_param_counts           total and active (per-token) parameters of a transformers MoE config, computed from
                           the config alone (never instantiates the model)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from reference.routing import top_k_routing

SUPPORTED_MODEL_TYPES = ("mixtral", "qwen2_moe", "qwen3_moe", "olmoe")


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
    return int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)


def _attention_params(config: Any, model_type: str) -> int:
    """q, k, v, o projections (+ biases) and q/k norms of one decoder layer, as each modelling file builds them."""
    h: int = config.hidden_size
    n_heads: int = config.num_attention_heads
    n_kv: int = config.num_key_value_heads or n_heads
    hd = _head_dim(config)
    q_out, kv_out = n_heads * hd, n_kv * hd
    params = h * q_out + 2 * h * kv_out + q_out * h
    if model_type == "qwen2_moe":
        if getattr(config, "qkv_bias", True):  # transformers 4.x hard-codes the q/k/v biases; 5.x reads qkv_bias
            params += q_out + 2 * kv_out
    elif model_type in ("qwen3_moe", "olmoe") and config.attention_bias:
        params += q_out + 2 * kv_out + h
    if model_type == "qwen3_moe":
        params += 2 * hd  # q_norm, k_norm over head_dim
    elif model_type == "olmoe":
        params += h + (h // n_heads) * n_kv  # q_norm over all q features, k_norm over all k features
    return params


def _is_sparse_layer(config: Any, model_type: str, layer_idx: int) -> bool:
    if model_type in ("mixtral", "olmoe"):
        return True
    # Qwen2-MoE / Qwen3-MoE: dense MLP in mlp_only_layers and off the decoder_sparse_step grid.
    return (
        layer_idx not in (config.mlp_only_layers or [])
        and config.num_experts > 0
        and (layer_idx + 1) % config.decoder_sparse_step == 0
    )


def moe_param_counts(config: Any) -> dict[str, int]:
    """Total and active parameters of a transformers MoE causal LM, from its config only.

    ``total`` equals ``sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())``: tied
    embeddings count once, and router weights, norms, biases and (Qwen2-MoE) the shared expert and its
    sigmoid gate are included. ``active`` is what one token uses: total minus the (E - k) routed experts it skips in
    every sparse layer; embeddings, attention, routers and shared experts always count.

    Supported model_type: mixtral, qwen2_moe, qwen3_moe, olmoe. Per layer:
        attention  q, k, v, o (+ biases; + q/k norms for qwen3_moe and olmoe);  2 RMSNorms of hidden_size
        sparse MLP router E*h + E experts of 3*h*i_moe (+ qwen2_moe shared expert 3*h*i_shared + gate h)
        dense MLP  3*h*intermediate_size (qwen2_moe / qwen3_moe mlp_only_layers or decoder_sparse_step)
    plus embeddings V*h, the final norm h, and lm_head V*h unless tie_word_embeddings.
    """
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"moe_param_counts does not know model_type {model_type!r}; supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    h = config.hidden_size
    if model_type == "mixtral":
        n_experts, expert_ffn = config.num_local_experts, config.intermediate_size
    elif model_type == "olmoe":
        n_experts, expert_ffn = config.num_experts, config.intermediate_size
    else:
        n_experts, expert_ffn = config.num_experts, config.moe_intermediate_size
    top_k = config.num_experts_per_tok
    expert_params = 3 * h * expert_ffn  # gate, up (stored fused as gate_up_proj) and down, no biases

    embeddings = config.vocab_size * h
    total = embeddings + h  # embed_tokens + final norm
    if not config.tie_word_embeddings:
        total += embeddings  # lm_head
    skipped = 0
    for layer_idx in range(config.num_hidden_layers):
        total += 2 * h + _attention_params(config, model_type)
        if _is_sparse_layer(config, model_type, layer_idx):
            total += n_experts * h + n_experts * expert_params
            if model_type == "qwen2_moe":
                total += 3 * h * config.shared_expert_intermediate_size + h
            skipped += (n_experts - top_k) * expert_params
        else:
            total += 3 * h * config.intermediate_size
    return {"total": total, "active": total - skipped}
