"""Known mistakes in lab 2.4.2, as mutated references. The engine names the one the student's outputs match."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from autograder.checks.api import Misconception
from reference import selective_scan, selective_state_update


def _scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, return_last_state=False, *,
          mistake: str):
    dtype = u.dtype
    u, delta, A = u.float(), delta.float(), A.float()
    if mistake == "bias_after_softplus":
        if delta_softplus:
            delta = F.softplus(delta)
        if delta_bias is not None:
            delta = delta + delta_bias.float()[:, None]
    else:
        if delta_bias is not None:
            delta = delta + delta_bias.float()[:, None]
        if delta_softplus and mistake != "softplus_skipped":
            delta = F.softplus(delta)
    dim = u.shape[1]

    def per_step(M, l):
        M = M.float()
        if M.dim() == 2:
            return M[None]
        if M.dim() == 3:
            return M[:, None, :, l]
        if mistake == "groups_tiled":  # channel d reads group d % G instead of d // (dim / G)
            return M[..., l].repeat(1, dim // M.shape[1], 1)
        return M[..., l].repeat_interleave(dim // M.shape[1], dim=1)

    x = u.new_zeros(u.shape[0], dim, A.shape[1])
    ys = []
    for l in range(u.shape[2]):
        d = delta[:, :, l, None]
        dA = torch.exp(d * A)
        if mistake == "zoh_for_B":  # (exp(dA) - 1) / A * B instead of delta * B
            dB = (dA - 1) / A * per_step(B, l)
        else:
            dB = d * per_step(B, l)
        if mistake == "output_before_update":
            ys.append((x * per_step(C, l)).sum(-1))
        x = dA * x + dB * u[:, :, l, None]
        if mistake != "output_before_update":
            ys.append((x * per_step(C, l)).sum(-1))
    y = torch.stack(ys, -1)
    if D is not None and mistake != "D_skip_missing":
        y = y + u * D.float()[:, None]
    if z is not None:
        y = y * (torch.sigmoid(z.float()) if mistake == "sigmoid_gate" else F.silu(z.float()))
    y = y.to(dtype)
    return (y, x) if return_last_state else y


def _step(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False, *, mistake: str):
    d = dt.float()
    if mistake == "bias_after_softplus":
        d = F.softplus(d) if dt_softplus else d
        d = d + dt_bias.float() if dt_bias is not None else d
    else:
        d = d + dt_bias.float() if dt_bias is not None else d
        d = F.softplus(d) if dt_softplus and mistake != "softplus_skipped" else d
    dim = x.shape[1]

    def grouped(M):
        if M.dim() != 3:
            return M.float()[:, None]
        if mistake == "groups_tiled":
            return M.float().repeat(1, dim // M.shape[1], 1)
        return M.float().repeat_interleave(dim // M.shape[1], 1)

    Bc, Cc = grouped(B), grouped(C)
    new_state = torch.exp(d[..., None] * A.float()) * state.float() + (d * x.float())[..., None] * Bc
    read = state.float() if mistake == "output_before_update" else new_state
    out = (read * Cc).sum(-1)
    if D is not None and mistake != "D_skip_missing":
        out = out + x.float() * D.float()
    if z is not None:
        out = out * F.silu(z.float())
    if mistake != "state_not_updated":
        state.copy_(new_state.to(state.dtype))  # the contract: the state is updated IN PLACE
    return out.to(x.dtype)


def _scan_mutant(mistake):
    def mutant(*args, **kwargs):
        return _scan(*args, **kwargs, mistake=mistake)

    return mutant


EXPLAIN = {
    "softplus_skipped": "delta_softplus=True asks for delta = softplus(delta + delta_bias); your delta was used "
                        "raw, so negative deltas grow the state instead of decaying it.",
    "bias_after_softplus": "delta_bias belongs inside the softplus: softplus(delta + delta_bias). Adding it after "
                           "the softplus shifts every step size and can make delta negative.",
    "zoh_for_B": "Mamba discretises A with zero-order hold (exp(delta A)) but B with Euler (delta * B). Using the "
                 "ZOH formula (exp(delta A) - 1) / A * B for B differs from the reference kernels.",
    "D_skip_missing": "The skip connection out = y + D * u is missing: D is a learned per-channel residual.",
    "sigmoid_gate": "The gate is silu(z) = z * sigmoid(z), not sigmoid(z).",
    "groups_tiled": "With G groups of B and C, channel d uses group d // (dim / G): consecutive channels share a "
                    "group (repeat_interleave). Tiling the groups (repeat, channel d -> group d % G) mixes them.",
    "output_before_update": "y_l must be read from the state after step l (x_l = deltaA x_{l-1} + deltaB u_l, then "
                            "y_l = C_l x_l); you read it before the update, one step late.",
}

MISCONCEPTIONS = [
    Misconception(name.replace("_", " "), "selective_scan", text, _scan_mutant(name)) for name, text in EXPLAIN.items()
] + [
    Misconception("output read before the state update", "selective_state_update", EXPLAIN["output_before_update"],
                  lambda *a, **k: _step(*a, **k, mistake="output_before_update")),
    Misconception("softplus skipped", "selective_state_update", EXPLAIN["softplus_skipped"],
                  lambda *a, **k: _step(*a, **k, mistake="softplus_skipped")),
    Misconception("dt_bias added after softplus", "selective_state_update", EXPLAIN["bias_after_softplus"],
                  lambda *a, **k: _step(*a, **k, mistake="bias_after_softplus")),
    Misconception("state not updated in place", "selective_state_update",
                  "The decode step must write the new state into the `state` tensor it was given (state.copy_(...) "
                  "or state[:] = ...): the next token's step reads it from there. Rebinding the name (state = ...) "
                  "leaves the caller's tensor untouched.", lambda *a, **k: _step(*a, **k, mistake="state_not_updated")),
    Misconception("D skip missing in the step", "selective_state_update", EXPLAIN["D_skip_missing"],
                  lambda *a, **k: _step(*a, **k, mistake="D_skip_missing")),
    Misconception("groups tiled in the step", "selective_state_update", EXPLAIN["groups_tiled"],
                  lambda *a, **k: _step(*a, **k, mistake="groups_tiled")),
]

def _reference_scan(*args, **kwargs):
    return selective_scan(*args, **kwargs, backend="sequential")


# The course's answers (diagnosis names a mutant only where it differs from them).
REFERENCES = {"selective_scan": _reference_scan, "selective_state_update": selective_state_update}
