"""Known mistakes in lab 2.4.3, as mutated references. The engine names the one the student's outputs match."""

from __future__ import annotations

import torch
from transformers import AutoConfig

from autograder.checks.api import Misconception
from reference import expert_activation_counts, moe_param_counts


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


def _config(fields):
    return AutoConfig.for_model(fields["model_type"], **{k: v for k, v in fields.items() if k != "model_type"})


def _parts(fields):
    """Pieces of the count the mistakes below add or drop, per model."""
    c = _config(fields)
    h = c.hidden_size
    moe = c.model_type == "qwen2_moe"
    n_experts = c.num_experts if moe else c.num_local_experts
    expert = 3 * h * (c.moe_intermediate_size if moe else c.intermediate_size)
    sparse = [i for i in range(c.num_hidden_layers)
              if not moe or (i not in (c.mlp_only_layers or []) and (i + 1) % c.decoder_sparse_step == 0)]
    shared = (3 * h * c.shared_expert_intermediate_size + h) if moe else 0
    embeddings = c.vocab_size * h * (1 if c.tie_word_embeddings else 2)
    return c, len(sparse), n_experts, expert, shared, embeddings


def _active_all_experts(config):
    counts = moe_param_counts(_config(config))
    return {"total": counts["total"], "active": counts["total"]}


def _active_top1(config):
    c, sparse, _, expert, _, _ = _parts(config)
    counts = moe_param_counts(c)
    return {"total": counts["total"], "active": counts["active"] - sparse * (c.num_experts_per_tok - 1) * expert}


def _shared_not_active(config):
    c, sparse, _, _, shared, _ = _parts(config)
    counts = moe_param_counts(c)
    return {"total": counts["total"], "active": counts["active"] - sparse * shared}


def _embeddings_excluded(config):
    c, _, _, _, _, embeddings = _parts(config)
    counts = moe_param_counts(c)
    return {"total": counts["total"] - embeddings, "active": counts["active"] - embeddings}


def _router_forgotten(config):
    c, sparse, n_experts, _, _, _ = _parts(config)
    counts = moe_param_counts(c)
    router = sparse * n_experts * c.hidden_size
    return {"total": counts["total"] - router, "active": counts["active"] - router}


def _tied_counted_twice(config):
    c = _config(config)
    counts = moe_param_counts(c)
    extra = c.vocab_size * c.hidden_size if c.tie_word_embeddings else 0
    return {"total": counts["total"] + extra, "active": counts["active"] + extra}


def _every_layer_sparse(config):
    fields = dict(config)
    if fields["model_type"] == "qwen2_moe":
        fields.update(mlp_only_layers=[], decoder_sparse_step=1)
    return moe_param_counts(_config(fields))


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
                  "Qwen2-MoE's shared expert (and its sigmoid gate) runs for every token: it is active, always.",
                  _shared_not_active),
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
]

# The course's answers (diagnosis names a mutant only where it differs from them).
REFERENCES = {"expert_activation_counts": expert_activation_counts,
              "moe_param_counts": lambda config: moe_param_counts(_config(config))}
