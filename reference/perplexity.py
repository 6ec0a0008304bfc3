"""Sliding-window perplexity of a causal LM: the trusted reference.

The recipe is transformers' "perplexity of fixed-length models", made exact: every token after the first is
predicted exactly once, and the NLL is summed token by token.

Windows: the targets 1..n-1 are taken in blocks of ``stride``. For the block [s, e) the model reads the
``max_length`` tokens that end just before its last target, ids[max(0, e-1-max_length) : e-1], and the logits at the
positions of tokens s-1..e-2 predict tokens s..e-1. So:
    - the model never reads more than max_length tokens;
    - target t sees between max_length - stride + 1 and max_length tokens of context (fewer near the start);
    - stride == 1 gives every target the full max_length tokens before it;
    - stride == max_length gives disjoint windows, and no token is lost at a window boundary.
Difference from the transformers docs' loop: there the window also contains the last target as an input (whose
logits are unused), so each target gets one token less context, and with stride == max_length the first token of
every window after the first is never predicted.
"""

from __future__ import annotations

import math

import torch

from reference.common import compute_dtype


def _model_device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def perplexity(model: torch.nn.Module, input_ids: torch.Tensor, max_length: int, stride: int) -> float:
    """exp(mean NLL) of ``input_ids`` under ``model`` with windows of at most ``max_length`` tokens.

    Shapes: input_ids (n,) or (1, n) integer token ids, n >= 2. ``model(ids).logits`` must be (1, L, V) for ids
    (1, L). Runs under torch.no_grad on the model's device (its first parameter's; CPU for a parameterless model).
    Dtype policy: log-softmax in fp32 (fp64 stays fp64); NLLs summed in fp64.

        ppl = exp( (1 / (n-1)) * sum_{t=1}^{n-1} -log p(x_t | x_{c(t)} .. x_{t-1}) )
    with c(t) the window start described in the module docstring.
    """
    if input_ids.dim() == 2 and input_ids.shape[0] == 1:
        ids = input_ids[0]
    elif input_ids.dim() == 1:
        ids = input_ids
    else:
        raise ValueError(f"input_ids must be (n,) or (1, n), got {tuple(input_ids.shape)}")
    n = ids.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 tokens to predict one, got {n}")
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    if not 1 <= stride <= max_length:
        raise ValueError(f"stride must be between 1 and max_length ({max_length}), got {stride}")

    device = _model_device(model)
    ids = ids.to(device)
    total_nll = 0.0
    with torch.no_grad():
        for start in range(1, n, stride):  # targets [start, end)
            end = min(start + stride, n)
            begin = max(0, end - 1 - max_length)
            logits = model(ids[begin : end - 1].unsqueeze(0)).logits[0]
            # logits row j predicts token begin + j + 1; the targets are rows start-1-begin .. end-2-begin.
            rows = logits[start - 1 - begin : end - 1 - begin]
            compute = compute_dtype(rows)
            log_probs = torch.log_softmax(rows.to(compute), dim=-1)
            nll = -log_probs.gather(1, ids[start:end].unsqueeze(1)).squeeze(1)
            total_nll += nll.to(torch.float64).sum().item()
    return math.exp(total_nll / (n - 1))
