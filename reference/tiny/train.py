"""Short, seeded CPU training loops for the tiny models, and the routing statistics of lab 2.4.3.

Training is plain next-token prediction with AdamW on random windows of the synthetic corpus. Every batch row is
a window of ONE domain (code, maths or prose), as a real pre-training document would be; with top-1 routing
pressure from the load-balancing loss this is enough for the experts of the small MoE to specialise by domain.

Determinism: seeds are fixed and training runs single-threaded (``torch.set_num_threads(1)`` inside
``single_thread``), so a rebuild on the same machine and torch build is bit-identical. Across CPUs or torch builds
the float results may differ in the last bits (different BLAS kernels); the manifest records the file hashes of
the build that produced it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel
from transformers.models.mamba import modeling_mamba


def training_scan(
    hidden_states: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    **kwargs: object,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """transformers' recurrent ``mamba_selective_scan`` with fewer autograd nodes, for training only.

    hidden_states, dt, z: (batch, dim, L); A: (dim, N); B, C: (batch, N, L); D, delta_bias: (dim,).
    Same maths and fp32 state as the reference (docs/facts.md, "Selective scan": ZOH for A, Euler for B). The
    reference indexes ``discrete_A[:, :, t]`` once per step, whose backward allocates a full-size zero tensor per
    step (about 1 s per training step of the tiny Mamba); here the per-step slices come from ``unbind`` (one
    ``stack`` backward), the loop holds one fused multiply-add and C is applied once to all states. Equal to the
    reference up to float rounding (tested). The saved checkpoints run on the unmodified transformers code.
    """
    batch_size, intermediate_size, _ = hidden_states.shape
    input_dtype = hidden_states.dtype
    if delta_bias is not None:
        dt = dt + delta_bias.to(dt.dtype)[..., None]
    if delta_softplus:
        dt = F.softplus(dt)
    dt = dt.float()
    discrete_A = torch.exp(A[None, :, None, :] * dt[:, :, :, None])  # (batch, dim, L, N)
    deltaB_u = (dt * hidden_states.float())[:, :, :, None] * B.float().transpose(1, 2)[:, None, :, :]
    ssm_state = torch.zeros(batch_size, intermediate_size, A.shape[-1], device=hidden_states.device)
    states = []
    for dA, dBu in zip(discrete_A.unbind(2), deltaB_u.unbind(2), strict=True):
        ssm_state = torch.addcmul(dBu, dA, ssm_state)  # x_l = exp(dt_l A) x_{l-1} + dt_l B_l u_l
        states.append(ssm_state)
    scan_output = torch.einsum("bdln,bnl->bdl", torch.stack(states, dim=2), C.float()).to(input_dtype)
    if D is not None:
        scan_output = scan_output + hidden_states * D[None, :, None]
    if z is not None:
        scan_output = scan_output * F.silu(z)
    if return_last_state:
        return scan_output, ssm_state
    return scan_output


@contextlib.contextmanager
def fast_mamba_training() -> Iterator[None]:
    """Route transformers' Mamba scan (``modeling_mamba.mamba_selective_scan``) through ``training_scan``."""
    original = modeling_mamba.mamba_selective_scan
    modeling_mamba.mamba_selective_scan = training_scan
    try:
        yield
    finally:
        modeling_mamba.mamba_selective_scan = original


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run with one intra-op thread (bit-reproducible reductions; the build is too small to gain from more)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def domain_batches(
    streams: Sequence[torch.Tensor], *, batch_size: int, seq_len: int, steps: int, seed: int
) -> Iterator[torch.Tensor]:
    """``steps`` batches of (batch_size, seq_len) token windows; each row is drawn from one domain stream."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        rows = []
        domains = torch.randint(len(streams), (batch_size,), generator=gen)
        for d in domains.tolist():
            stream = streams[d]
            start = int(torch.randint(len(stream) - seq_len, (1,), generator=gen))
            rows.append(stream[start : start + seq_len])
        yield torch.stack(rows)


def train_lm(
    model: PreTrainedModel,
    batches: Iterator[torch.Tensor],
    *,
    steps: int,
    lr: float = 3e-3,
    seed: int = 0,
) -> list[float]:
    """AdamW with linear warm-up and cosine decay; returns the loss of every step.

    MoE models train with ``output_router_logits=True``, so their loss includes the config's
    ``router_aux_loss_coef`` x load-balancing loss.
    """
    torch.manual_seed(seed)
    is_moe = hasattr(model.config, "router_aux_loss_coef")
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.95))
    warmup = max(1, steps // 10)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, schedule)
    losses: list[float] = []
    model.train()
    with single_thread(), fast_mamba_training():
        for step, batch in enumerate(batches):
            if step >= steps:
                break
            kwargs = {"output_router_logits": True} if is_moe else {}
            out = model(input_ids=batch, labels=batch, **kwargs)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            scheduler.step()
            optimiser.zero_grad(set_to_none=True)
            losses.append(float(out.loss.detach()))
    model.eval()
    return losses


@torch.no_grad()
def domain_routing_counts(
    model: PreTrainedModel, domain_ids: Sequence[torch.Tensor], *, seq_len: int = 64, max_windows: int = 16
) -> torch.Tensor:
    """Top-1 routing counts, shape (layers, experts, domains): how often each expert is a token's first choice.

    ``domain_ids[d]`` is a 1-D token stream of domain ``d``, cut into at most ``max_windows`` windows of
    ``seq_len`` tokens (the rest dropped).
    This is the expert x domain activation table of lab 2.4.3, computed from ``output_router_logits=True``.
    """
    model.eval()
    tables: list[torch.Tensor] = []
    for stream in domain_ids:
        n = min(len(stream) // seq_len, max_windows) * seq_len
        windows = stream[:n].view(-1, seq_len)
        with single_thread():
            out = model(input_ids=windows, output_router_logits=True)
        per_layer = []
        for logits in out.router_logits:
            top1 = logits.argmax(dim=-1)
            per_layer.append(torch.bincount(top1, minlength=logits.shape[-1]))
        counts = torch.stack(per_layer)  # (layers, experts)
        tables.append(counts)
    return torch.stack(tables, dim=-1).double()


def routing_mutual_information(counts: torch.Tensor) -> torch.Tensor:
    """Mutual information I(expert; domain) in bits per layer, from a (layers, experts, domains) count table.

    0 means routing ignores the domain; the maximum is log2(number of domains) = 1.585 bits for three domains.
    """
    counts = counts.double()
    joint = counts / counts.sum(dim=(1, 2), keepdim=True)
    p_e = joint.sum(dim=2, keepdim=True)
    p_d = joint.sum(dim=1, keepdim=True)
    ratio = torch.where(joint > 0, joint / (p_e * p_d), torch.ones_like(joint))
    return (joint * torch.log2(ratio)).sum(dim=(1, 2))


def favourite_expert_share(counts: torch.Tensor, k: int = 2) -> torch.Tensor:
    """Per layer, the mean over domains of the share of a domain's top-1 routes that go to its ``k`` favourites.

    With uniform routing over E experts this is k / E (0.25 for 2 of 8).
    """
    counts = counts.double()
    per_domain = counts / counts.sum(dim=1, keepdim=True)  # (layers, experts, domains)
    top = per_domain.topk(k, dim=1).values.sum(dim=1)  # (layers, domains)
    return top.mean(dim=1)
