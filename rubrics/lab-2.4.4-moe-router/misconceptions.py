"""Known mistakes in lab 2.4.4, as mutated references. The engine names the one the student's outputs match."""

from __future__ import annotations

import math

import torch

from autograder.checks.api import Misconception
from reference import load_balancing_loss, router_z_loss, top_k_routing


def _not_renormalised(logits, top_k, normalize=True):
    return top_k_routing(logits, top_k, normalize=False)


def _always_renormalised(logits, top_k, normalize=True):
    return top_k_routing(logits, top_k, normalize=True)


def _probs_in_logit_dtype(logits, top_k, normalize=True):
    w, e = top_k_routing(logits.float(), top_k, normalize)
    return w.float(), e  # weights left in fp32 instead of the logits' dtype


def _softmax_over_tokens(logits, top_k, normalize=True):
    probs = torch.softmax(logits.float(), dim=0)  # over the tokens instead of the experts
    weights, experts = torch.topk(probs, top_k, dim=-1)
    if normalize:
        weights = weights / weights.sum(-1, keepdim=True)
    return weights.to(logits.dtype), experts


def _topk_of_logits_as_weights(logits, top_k, normalize=True):
    weights, experts = torch.topk(logits, top_k, dim=-1)  # the raw logits used as weights, no softmax
    if normalize:
        weights = weights / weights.sum(-1, keepdim=True)
    return weights, experts


def _lbl_divided_by_k(gate_logits, num_experts, top_k, attention_mask=None):
    return load_balancing_loss(gate_logits, num_experts, top_k, attention_mask) / top_k


def _lbl_unmasked(gate_logits, num_experts, top_k, attention_mask=None):
    return load_balancing_loss(gate_logits, num_experts, top_k, None)


def _lbl_layer_mean(gate_logits, num_experts, top_k, attention_mask=None):
    layers = [gate_logits] if isinstance(gate_logits, torch.Tensor) else list(gate_logits)
    return torch.stack([load_balancing_loss((x,), num_experts, top_k, attention_mask) for x in layers]).mean()


def _lbl_top1_f(gate_logits, num_experts, top_k, attention_mask=None):
    return load_balancing_loss(gate_logits, num_experts, 1, attention_mask)


def _z_not_squared(router_logits):
    x = router_logits if isinstance(router_logits, torch.Tensor) else torch.cat(list(router_logits))
    return torch.logsumexp(x.float().reshape(-1, x.shape[-1]), -1).mean()


def _z_max_logit(router_logits):
    x = router_logits.float().reshape(-1, router_logits.shape[-1])
    return (x.max(-1).values ** 2).mean()


def _z_sum(router_logits):
    x = router_logits.float().reshape(-1, router_logits.shape[-1])
    return router_z_loss(x) * x.shape[0]


def _z_in_low_precision(router_logits):
    x = router_logits.reshape(-1, router_logits.shape[-1])
    return (torch.logsumexp(x, -1) ** 2).mean().float()


def _imbalance_sample_std(counts):
    c = counts.double().sum(0) if counts.dim() == 2 else counts.double()
    q = c / c.sum()
    return {"cv": float(c.std(unbiased=True) / c.mean()), "max_over_mean": float(c.max() / c.mean()),
            "entropy": -sum(float(p) * math.log(float(p)) for p in q if p > 0)}


def _imbalance_normalised_entropy(counts):
    d = _load_imbalance(counts)
    d["entropy"] = d["entropy"] / math.log(counts.shape[-1])
    return d


def _imbalance_first_layer(counts):
    return _load_imbalance(counts[0] if counts.dim() == 2 else counts)


def _imbalance_log2(counts):
    d = _imbalance_sample_std(counts)
    c = counts.double().sum(0) if counts.dim() == 2 else counts.double()
    d["cv"] = float(c.std(unbiased=False) / c.mean())
    d["entropy"] = d["entropy"] / math.log(2)
    return d


MISCONCEPTIONS = [
    Misconception("top-k weights not renormalised", "top_k_routing",
                  "With normalize=True (Mixtral) the k chosen probabilities are divided by their sum so each "
                  "token's weights add up to 1; yours are the raw softmax probabilities.", _not_renormalised),
    Misconception("renormalised although normalize=False", "top_k_routing",
                  "Qwen2-MoE (norm_topk_prob=False) keeps the raw softmax probabilities of the k experts. Taking a "
                  "softmax over the top-k logits only is the same as renormalising.", _always_renormalised),
    Misconception("weights not cast back to the logits' dtype", "top_k_routing",
                  "Compute the softmax in fp32 for accuracy, then cast the weights back to the hidden dtype "
                  "(bf16 here), as Mixtral does.", _probs_in_logit_dtype),
    Misconception("softmax over the tokens", "top_k_routing",
                  "The router's softmax runs over the experts of each token (dim=-1), not over the tokens (dim=0): "
                  "each token's probabilities must sum to 1.", _softmax_over_tokens),
    Misconception("logits used as weights", "top_k_routing",
                  "The weights are softmax probabilities of the chosen experts, not their raw logits (which can be "
                  "negative and do not sum to anything meaningful).", _topk_of_logits_as_weights),
    Misconception("loss divided by k", "load_balancing_loss",
                  "transformers' load_balancing_loss_func is E * sum_e f_e P_e with f_e the share of top-k slots "
                  "(summing to k): balanced routing gives k, not 1. Do not divide by k.", _lbl_divided_by_k),
    Misconception("padding not masked", "load_balancing_loss",
                  "Rows whose attention_mask is 0 are padding: leave them out of both f_e and P_e (the mask "
                  "applies to every layer's rows).", _lbl_unmasked),
    Misconception("per-layer losses averaged instead of pooled", "load_balancing_loss",
                  "The tuple of layers is concatenated and f, P are computed over all rows of all layers at once; "
                  "averaging per-layer losses gives a different number.", _lbl_layer_mean),
    Misconception("f_e counted from the top-1 expert only", "load_balancing_loss",
                  "f_e counts every one of the k slots a token fills, not just its first choice.", _lbl_top1_f),
    Misconception("z-loss not squared", "router_z_loss",
                  "The ST-MoE z-loss is the mean of (logsumexp of the logits)^2: square before averaging.",
                  _z_not_squared),
    Misconception("max logit instead of logsumexp", "router_z_loss",
                  "Use torch.logsumexp over the experts, not the largest logit.", _z_max_logit),
    Misconception("summed over tokens instead of averaged", "router_z_loss",
                  "Take the mean over tokens so the loss does not grow with the batch.", _z_sum),
    Misconception("logsumexp in bf16", "router_z_loss",
                  "Large logits lose precision in bf16: compute the logsumexp in fp32.", _z_in_low_precision),
    Misconception("sample standard deviation in cv", "load_imbalance",
                  "cv uses the population standard deviation (unbiased=False), as the lab defines it.",
                  _imbalance_sample_std),
    Misconception("entropy in bits", "load_imbalance",
                  "The entropy is in nats (natural log), not bits.", _imbalance_log2),
    Misconception("entropy normalised by log E", "load_imbalance",
                  "The lab's entropy is the plain Shannon entropy in nats (uniform load: log E), not divided by "
                  "log E.", _imbalance_normalised_entropy),
    Misconception("first layer only", "load_imbalance",
                  "Counts of shape (layers, E) are summed over the layers first: the load of an expert is its "
                  "tokens in every layer, not in the first one.", _imbalance_first_layer),
]

def _load_imbalance(counts):
    """The lab's definition: population cv, max/mean and the entropy (nats) of the load summed over layers."""
    c = counts.double().sum(0) if counts.dim() == 2 else counts.double()
    q = c / c.sum()
    return {"cv": float(c.std(unbiased=False) / c.mean()), "max_over_mean": float(c.max() / c.mean()),
            "entropy": -sum(float(p) * math.log(float(p)) for p in q if p > 0)}


# The course's answers (diagnosis names a mutant only where it differs from them).
REFERENCES = {"top_k_routing": top_k_routing, "load_balancing_loss": load_balancing_loss,
              "router_z_loss": router_z_loss, "load_imbalance": _load_imbalance}
