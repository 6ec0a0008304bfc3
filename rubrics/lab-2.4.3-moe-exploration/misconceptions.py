"""Known mistakes in lab 2.4.3, as mutated references. The engine names the one the student's outputs match."""

from __future__ import annotations

import torch

from autograder.checks.api import Misconception
from reference import expert_activation_counts, moe_param_counts
from reference.moe import moe_layout


def _layers(router_logits):
    if isinstance(router_logits, torch.Tensor):
        return [router_logits] if router_logits.dim() == 2 else list(router_logits.unbind(0))
    return list(router_logits)


def _first_choice_only(router_logits, top_k):
    return expert_activation_counts(router_logits, 1)


def _least_probable(router_logits, top_k):
    return expert_activation_counts([-x for x in _layers(router_logits)], top_k)


def _shares(router_logits, top_k):
    counts = expert_activation_counts(router_logits, top_k)
    return counts.double() / counts.sum(-1, keepdim=True)


def _pooled_over_layers(router_logits, top_k):
    return expert_activation_counts(router_logits, top_k).sum(0, keepdim=True)


def _shifted(config, total=0, active=None):
    """The reference's counts with the pieces a mistake drops (negative) or adds (positive)."""
    counts = moe_param_counts(config)
    return {"total": counts["total"] + total, "active": counts["active"] + (total if active is None else active)}


def _active_all_experts(config):
    counts = moe_param_counts(config)
    return {"total": counts["total"], "active": counts["total"]}


def _active_top1(config):
    m = moe_layout(config)
    return _shifted(config, 0, -len(m.sparse_layers) * (m.top_k - 1) * m.expert_params)


def _shared_not_active(config):
    m = moe_layout(config)
    return _shifted(config, 0, -len(m.sparse_layers) * m.shared_params)


def _shared_forgotten(config):
    m = moe_layout(config)
    return _shifted(config, -len(m.sparse_layers) * m.shared_params)


def _embeddings_excluded(config):
    m = moe_layout(config)
    return _shifted(config, -m.embeddings * (1 if m.tied else 2))


def _router_forgotten(config):
    m = moe_layout(config)
    return _shifted(config, -len(m.sparse_layers) * m.router_params)


def _tied_counted_twice(config):
    m = moe_layout(config)
    return _shifted(config, m.embeddings if m.tied else 0)


def _every_layer_sparse(config):
    fields = dict(config)
    if fields["model_type"] == "qwen2_moe":
        fields.update(mlp_only_layers=[], decoder_sparse_step=1)
    return moe_param_counts(fields)


def _dense_first_layers_ignored(config):
    fields = dict(config)
    if fields["model_type"] in ("deepseek", "deepseek_v2", "deepseek_v3"):
        fields.update(first_k_dense_replace=0)
    return moe_param_counts(fields)


def _mla_as_multi_head(config):
    """MLA counted as plain attention: q, k, v, o of num_heads x head_dim (h / heads), no low-rank factors."""
    m = moe_layout(config)
    if m.model_type not in ("deepseek_v2", "deepseek_v3"):
        return moe_param_counts(config)
    h = m.hidden_size
    plain = 4 * h * h + 2 * h
    layers = len(m.sparse_layers) + len(m.dense_layers)
    return _shifted(config, layers * (plain - m.attention_params))


MISCONCEPTIONS = [
    Misconception("top-1 counted instead of top-k", "expert_activation_counts",
                  "Each token fills top_k slots: count every one of its k chosen experts, not only the first.",
                  _first_choice_only),
    Misconception("least probable experts counted", "expert_activation_counts",
                  "torch.topk picks the largest values by default; sorting ascending (or largest=False) picks the "
                  "experts the router likes least.", _least_probable),
    Misconception("shares instead of counts", "expert_activation_counts",
                  "Return the number of top-k slots per expert (int64, each row summing to tokens x k), not the "
                  "share of them.", _shares),
    Misconception("layers pooled", "expert_activation_counts",
                  "Count per layer: the result is (layers, E), one row per MoE layer, not one row for all layers.",
                  _pooled_over_layers),
    Misconception("active counts all experts", "moe_param_counts",
                  "A token only runs its k routed experts: active = total - (E - k) experts in every sparse layer.",
                  _active_all_experts),
    Misconception("one expert counted as active instead of k", "moe_param_counts",
                  "num_experts_per_tok experts run per token (Mixtral: 2), so k experts per sparse layer are "
                  "active.", _active_top1),
    Misconception("shared expert not counted as active", "moe_param_counts",
                  "Shared experts (Qwen2-MoE's one with its sigmoid gate, DeepSeekMoE's n_shared_experts) run for "
                  "every token: they are active, always.", _shared_not_active),
    Misconception("shared experts forgotten", "moe_param_counts",
                  "Besides the routed experts, every sparse layer of Qwen2-MoE and DeepSeekMoE holds shared experts "
                  "(DeepSeek: n_shared_experts of moe_intermediate_size, one fused MLP of n_shared x that width): "
                  "they count in the total and, always used, in the active count.", _shared_forgotten),
    Misconception("embeddings excluded", "moe_param_counts",
                  "The totals are sum(p.numel()) of the whole model: include the embedding table and the lm_head "
                  "(both always active).", _embeddings_excluded),
    Misconception("router weights forgotten", "moe_param_counts",
                  "Every sparse layer has a router (gate) of E x hidden_size weights, used by every token.",
                  _router_forgotten),
    Misconception("tied embeddings counted twice", "moe_param_counts",
                  "With tie_word_embeddings the lm_head is the embedding matrix: count it once.", _tied_counted_twice),
    Misconception("every layer taken as sparse", "moe_param_counts",
                  "Qwen2-MoE keeps a dense MLP of intermediate_size in mlp_only_layers and in layers off the "
                  "decoder_sparse_step grid.", _every_layer_sparse),
    Misconception("dense first layer taken as sparse", "moe_param_counts",
                  "DeepSeek models keep a dense MLP of intermediate_size in their first first_k_dense_replace layers "
                  "(DeepSeekMoE-16B: layer 0; DeepSeek-V3: layers 0-2); experts start after them.",
                  _dense_first_layers_ignored),
    Misconception("MLA counted as multi-head attention", "moe_param_counts",
                  "DeepSeek-V2/V3 attention is Multi-head Latent Attention: q (through q_lora_rank when set) and a "
                  "shared low-rank kv_a_proj (kv_lora_rank + qk_rope_head_dim) expanded by kv_b_proj, with its own "
                  "norms; head sizes come from qk_nope/qk_rope/v_head_dim, not hidden_size / heads.",
                  _mla_as_multi_head),
]

# The course's answers (diagnosis names a mutant only where it differs from them).
REFERENCES = {"expert_activation_counts": expert_activation_counts,
              "moe_param_counts": moe_param_counts}  # the reference reads the config dict itself
