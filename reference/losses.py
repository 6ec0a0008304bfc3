"""Auxiliary losses for MoE routers: the trusted reference.

    load_balancing_loss            transformers' load_balancing_loss_func (Mixtral, Qwen2-MoE, OLMoE, ...)
    switch_load_balancing_loss     Switch Transformer, top-1:   alpha * N * sum_i f_i P_i
    deepseek_expert_balance_loss   DeepSeekMoE expert level:    alpha1 * sum_i f_i P_i
    deepseek_device_balance_loss   DeepSeekMoE device level:    alpha2 * sum_d f'_d P'_d
    router_z_loss                  ST-MoE:                      mean_t (logsumexp_j x_{t,j})^2

Each returns a 0-dim fp32 tensor (fp64 when the inputs are fp64).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from reference.common import compute_dtype

Logits = torch.Tensor | Sequence[torch.Tensor]


def _layers(logits: Logits) -> list[torch.Tensor]:
    """One tensor is one layer; a tuple or list is one tensor per layer."""
    layers = [logits] if isinstance(logits, torch.Tensor) else list(logits)
    if not layers:
        raise ValueError("router logits are empty: pass a tensor or a non-empty tuple of per-layer tensors")
    return layers


def load_balancing_loss(
    gate_logits: Logits,
    num_experts: int,
    top_k: int,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The Mixtral-family auxiliary loss, exactly as transformers' ``load_balancing_loss_func`` computes it.

    Shapes: gate_logits a tuple/list of per-layer (batch*seq, E) tensors, or one such tensor (one layer); every
    layer's rows are pooled into one set of statistics. attention_mask (batch, seq), 1 for real tokens: the same
    mask applies to every layer's rows and padded rows are left out of both means.
    Dtype policy: as transformers, the softmax and top-k run in the logits' own dtype (so the same experts are
    chosen); counts and means are accumulated in fp32 (fp64 for fp64 logits).

        p_t = softmax(x_t);  S_t = top-k experts of p_t;  over the (unmasked) rows t of all layers:
        f_e = #{t : e in S_t} / #rows          (share of top-k slots; sums to k over e)
        P_e = mean_t p_{t,e}
        loss = E * sum_e f_e P_e               not divided by k: perfectly balanced routing gives k
    """
    layers = _layers(gate_logits)
    if not 1 <= top_k <= num_experts:
        raise ValueError(f"top_k must be between 1 and num_experts ({num_experts}), got {top_k}")
    device = layers[0].device
    acc = compute_dtype(layers[0])
    counts = torch.zeros(num_experts, dtype=acc, device=device)
    prob_sum = torch.zeros(num_experts, dtype=acc, device=device)
    rows = torch.zeros((), dtype=acc, device=device)
    for layer in layers:
        layer = layer.to(device).reshape(-1, num_experts)
        if attention_mask is None:
            mask = torch.ones(layer.shape[0], dtype=acc, device=device)
        else:
            mask = attention_mask.reshape(-1).to(device=device, dtype=acc)
            if mask.numel() != layer.shape[0]:
                raise ValueError(
                    f"attention_mask has {mask.numel()} tokens but a layer has {layer.shape[0]} rows of logits"
                )
        probs = torch.softmax(layer, dim=-1)
        chosen = torch.topk(probs, top_k, dim=-1).indices
        counts = counts + torch.zeros_like(counts).index_add_(0, chosen.reshape(-1), mask.repeat_interleave(top_k))
        prob_sum = prob_sum + (probs.to(acc) * mask.unsqueeze(-1)).sum(dim=0)
        rows = rows + mask.sum()
    f = counts / rows
    p = prob_sum / rows
    return num_experts * torch.sum(f * p)


def switch_load_balancing_loss(router_logits: torch.Tensor, alpha: float = 1e-2) -> torch.Tensor:
    """Switch Transformer load-balancing loss (Fedus et al. 2021, eq. 4-6), top-1 routing.

    Shapes: router_logits (..., N); all leading dimensions are pooled into T tokens.
    Dtype policy: softmax and means in fp32 (fp64 stays fp64).

        p = softmax(x);  f_i = #{t : argmax_j p_{t,j} = i} / T;  P_i = mean_t p_{t,i}
        loss = alpha * N * sum_i f_i P_i       (balanced routing gives alpha)
    """
    num_experts = router_logits.shape[-1]
    logits = router_logits.reshape(-1, num_experts).to(compute_dtype(router_logits))
    probs = torch.softmax(logits, dim=-1)
    f = torch.bincount(probs.argmax(dim=-1), minlength=num_experts).to(probs.dtype) / probs.shape[0]
    p = probs.mean(dim=0)
    return alpha * num_experts * torch.sum(f * p)


def _deepseek_f_and_p(scores: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    n_routed = scores.shape[-1]
    if not 1 <= top_k <= n_routed:
        raise ValueError(f"top_k must be between 1 and the number of routed experts ({n_routed}), got {top_k}")
    s = scores.reshape(-1, n_routed).to(compute_dtype(scores))
    num_tokens = s.shape[0]
    chosen = torch.topk(s, top_k, dim=-1).indices
    selections = torch.bincount(chosen.reshape(-1), minlength=n_routed).to(s.dtype)
    f = selections * n_routed / (top_k * num_tokens)
    p = s.mean(dim=0)
    return f, p


def deepseek_expert_balance_loss(scores: torch.Tensor, top_k: int, alpha1: float) -> torch.Tensor:
    """DeepSeekMoE expert-level balance loss (Dai et al. 2024, eq. 12-14).

    Shapes: scores (T, N') or (..., N'), the per-token affinities s_{i,t} of the N' routed experts (DeepSeekMoE:
    softmax over the routed experts' logits), not logits; leading dimensions are pooled into T tokens. A token
    selects its top-K' (= top_k) experts by these scores.
    Dtype policy: fp32 (fp64 stays fp64).

        f_i = N' / (K' T) * #{t : i in top-K'(s_t)}
        P_i = (1/T) sum_t s_{i,t}
        loss = alpha1 * sum_i f_i P_i          (balanced routing with softmax scores gives alpha1)
    """
    f, p = _deepseek_f_and_p(scores, top_k)
    return alpha1 * torch.sum(f * p)


def deepseek_device_balance_loss(scores: torch.Tensor, top_k: int, n_devices: int, alpha2: float) -> torch.Tensor:
    """DeepSeekMoE device-level balance loss (Dai et al. 2024, eq. 15-17).

    Shapes: scores as for ``deepseek_expert_balance_loss``, (T, N') affinities. The N' routed experts are placed on
    n_devices devices in contiguous equal blocks: device d holds experts [d*N'/D, (d+1)*N'/D).
    Dtype policy: fp32 (fp64 stays fp64).

        f, P as in the expert-level loss
        f'_d = mean of f_i over the experts on device d;  P'_d = sum of P_i over them
        loss = alpha2 * sum_d f'_d P'_d        (balanced routing with softmax scores gives alpha2)
    """
    n_routed = scores.shape[-1]
    if n_devices < 1 or n_routed % n_devices != 0:
        raise ValueError(f"{n_routed} routed experts do not split evenly over n_devices={n_devices}")
    f, p = _deepseek_f_and_p(scores, top_k)
    f_dev = f.view(n_devices, -1).mean(dim=-1)
    p_dev = p.view(n_devices, -1).sum(dim=-1)
    return alpha2 * torch.sum(f_dev * p_dev)


def router_z_loss(router_logits: Logits) -> torch.Tensor:
    """ST-MoE router z-loss (Zoph et al. 2022, eq. 5), without its coefficient (1e-3 in the paper).

    Shapes: router_logits (tokens, E), (batch, seq, E), or a tuple/list of per-layer tensors of those shapes; a
    tuple's tokens are all pooled into one mean (every token of every layer counts once).
    Dtype policy: logsumexp and the mean in fp32 (fp64 stays fp64).

        loss = (1/T) sum_t (log sum_j exp x_{t,j})^2
    """
    layers = _layers(router_logits)
    acc = compute_dtype(layers[0])
    num_experts = layers[0].shape[-1]
    flat = torch.cat([layer.reshape(-1, num_experts).to(device=layers[0].device, dtype=acc) for layer in layers])
    return torch.mean(torch.logsumexp(flat, dim=-1) ** 2)
