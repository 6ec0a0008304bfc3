"""The reference auxiliary losses against transformers' implementations, the papers' formulas and their balanced
values."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func
from transformers.models.switch_transformers.modeling_switch_transformers import (
    load_balancing_loss_func as switch_load_balancing_loss_func,
)
from transformers.models.switch_transformers.modeling_switch_transformers import router_z_loss_func

from reference.losses import (
    deepseek_device_balance_loss,
    deepseek_expert_balance_loss,
    load_balancing_loss,
    router_z_loss,
    switch_load_balancing_loss,
)


def _layers(n_layers: int, tokens: int, experts: int, seed: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(tokens, experts, generator=gen) * 2 for _ in range(n_layers))


@pytest.mark.parametrize("top_k", [1, 2, 3])
@pytest.mark.parametrize("n_layers", [1, 3])
def test_load_balancing_loss_matches_transformers_unmasked(top_k: int, n_layers: int) -> None:
    logits = _layers(n_layers, tokens=2 * 7, experts=6, seed=top_k + 10 * n_layers)
    expected = load_balancing_loss_func(logits, num_experts=6, top_k=top_k)
    torch.testing.assert_close(load_balancing_loss(logits, 6, top_k), expected)


@pytest.mark.parametrize("top_k", [1, 2, 4])
def test_load_balancing_loss_matches_transformers_masked(top_k: int) -> None:
    batch, seq, experts = 3, 5, 8
    logits = _layers(4, batch * seq, experts, seed=top_k)
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[0, :2] = 0  # left padding
    mask[2, 3:] = 0  # right padding
    expected = load_balancing_loss_func(logits, experts, top_k, attention_mask=mask)
    got = load_balancing_loss(logits, experts, top_k, attention_mask=mask)
    torch.testing.assert_close(got, expected)
    # The mask matters: the unmasked loss of the same logits is different.
    assert not torch.allclose(got, load_balancing_loss(logits, experts, top_k))


def test_load_balancing_loss_matches_transformers_in_bf16() -> None:
    logits = tuple(layer.to(torch.bfloat16) for layer in _layers(2, 16, 8, seed=9))
    mask = torch.ones(2, 8)
    mask[1, 5:] = 0
    for attention_mask in (None, mask):
        expected = load_balancing_loss_func(logits, 8, 2, attention_mask=attention_mask)
        got = load_balancing_loss(logits, 8, 2, attention_mask=attention_mask)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, expected)


def test_load_balancing_loss_with_all_but_one_token_masked_is_e_times_its_top_k_mass() -> None:
    batch, seq, experts, top_k = 2, 4, 5, 2
    logits = _layers(2, batch * seq, experts, seed=3)
    mask = torch.zeros(batch, seq, dtype=torch.long)
    mask[1, 2] = 1
    row = 1 * seq + 2
    expected = load_balancing_loss_func(logits, experts, top_k, attention_mask=mask)
    got = load_balancing_loss(logits, experts, top_k, attention_mask=mask)
    torch.testing.assert_close(got, expected)
    # By hand: pooled over 2 layers, f_e = (#layers choosing e) / 2, P_e = mean over layers of p_e.
    f = torch.zeros(experts)
    p = torch.zeros(experts)
    for layer in logits:
        probs = torch.softmax(layer[row], dim=-1)
        f[probs.topk(top_k).indices] += 0.5
        p += probs / 2
    torch.testing.assert_close(got, experts * (f * p).sum())


def test_load_balancing_loss_single_tensor_is_one_layer_and_list_equals_tuple() -> None:
    (layer,) = _layers(1, 12, 4, seed=5)
    expected = load_balancing_loss_func((layer,), 4, 2)
    torch.testing.assert_close(load_balancing_loss(layer, 4, 2), expected)
    logits = _layers(3, 12, 4, seed=6)
    torch.testing.assert_close(load_balancing_loss(list(logits), 4, 2), load_balancing_loss(logits, 4, 2))


def test_load_balancing_loss_one_expert_is_one() -> None:
    logits = _layers(2, 9, 1, seed=0)
    torch.testing.assert_close(load_balancing_loss(logits, 1, 1), torch.tensor(1.0))
    torch.testing.assert_close(load_balancing_loss_func(logits, 1, 1), torch.tensor(1.0))


def test_load_balancing_loss_collapsed_router_gives_e_times_k_over_k() -> None:
    # Every token puts (almost) all mass on expert 0: f_0 = 1 (top-1), P_0 -> 1, loss -> E.
    logits = torch.zeros(10, 4)
    logits[:, 0] = 40.0
    torch.testing.assert_close(load_balancing_loss(logits, 4, 1), torch.tensor(4.0))


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    num_experts=st.integers(1, 8),
    n_layers=st.integers(1, 3),
    repeats=st.integers(1, 3),
)
def test_perfectly_balanced_routing_gives_exactly_k(
    data: st.DataObject, num_experts: int, n_layers: int, repeats: int
) -> None:
    top_k = data.draw(st.integers(1, num_experts), label="top_k")
    layers = []
    for _ in range(n_layers):
        # Tokens are all cyclic shifts of one vector with well-separated entries: every expert takes every value
        # equally often, so each gets k/E of the top-k slots and mean probability 1/E.
        values = data.draw(
            st.lists(st.integers(-40, 40), min_size=num_experts, max_size=num_experts, unique=True), label="values"
        )
        base = torch.tensor(values, dtype=torch.float32) * 0.1
        tokens = torch.stack([torch.roll(base, shift) for shift in range(num_experts)] * repeats)
        layers.append(tokens[torch.randperm(tokens.shape[0])])
    loss = load_balancing_loss(tuple(layers), num_experts, top_k)
    assert abs(loss.item() - top_k) < 1e-5


@pytest.mark.parametrize("alpha", [1e-2, 0.5])
def test_switch_load_balancing_loss_matches_transformers_switch(alpha: float) -> None:
    logits = torch.randn(1, 32, 8, generator=torch.Generator().manual_seed(1))
    probs = torch.softmax(logits, dim=-1)
    expected = alpha * switch_load_balancing_loss_func(probs, probs.argmax(-1))
    torch.testing.assert_close(switch_load_balancing_loss(logits, alpha=alpha), expected)


def test_switch_load_balancing_loss_formula_and_balanced_value() -> None:
    logits = torch.randn(50, 5, generator=torch.Generator().manual_seed(2))
    probs = torch.softmax(logits, dim=-1)
    f = torch.stack([(probs.argmax(-1) == i).float().mean() for i in range(5)])
    torch.testing.assert_close(switch_load_balancing_loss(logits, alpha=0.01), 0.01 * 5 * (f * probs.mean(0)).sum())
    balanced = torch.stack([torch.roll(torch.tensor([3.0, 1.0, 0.0, -1.0, 2.0]), s) for s in range(5)])
    torch.testing.assert_close(switch_load_balancing_loss(balanced, alpha=0.01), torch.tensor(0.01))


def test_router_z_loss_matches_transformers_switch_z_loss() -> None:
    logits = torch.randn(2, 7, 6, generator=torch.Generator().manual_seed(3)) * 3
    torch.testing.assert_close(router_z_loss(logits), router_z_loss_func(logits))
    torch.testing.assert_close(router_z_loss(logits.reshape(14, 6)), router_z_loss_func(logits))


def test_router_z_loss_pools_all_tokens_of_a_tuple_and_computes_in_fp32() -> None:
    a = torch.randn(4, 6, generator=torch.Generator().manual_seed(4))
    b = torch.randn(2, 3, 6, generator=torch.Generator().manual_seed(5))
    lse = torch.cat([torch.logsumexp(a, -1), torch.logsumexp(b, -1).reshape(-1)])
    torch.testing.assert_close(router_z_loss((a, b)), (lse**2).mean())
    half = router_z_loss(a.to(torch.bfloat16))
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, router_z_loss(a.to(torch.bfloat16).float()))
    # Shifting every logit by c shifts logsumexp by c: the z-loss punishes large logits.
    torch.testing.assert_close(router_z_loss(torch.zeros(3, 4)), torch.tensor(math.log(4) ** 2))


def _deepseek_by_hand(scores: torch.Tensor, top_k: int, n_devices: int) -> tuple[float, float]:
    """The DeepSeekMoE formulas written out with Python loops (eq. 12-17)."""
    t_count, n = scores.shape
    rows = scores.tolist()
    chosen = [set(sorted(range(n), key=lambda i, r=r: -r[i])[:top_k]) for r in rows]
    f = [n / (top_k * t_count) * sum(i in c for c in chosen) for i in range(n)]
    p = [sum(r[i] for r in rows) / t_count for i in range(n)]
    expert = sum(fi * pi for fi, pi in zip(f, p, strict=True))
    per = n // n_devices
    device = sum((sum(f[d * per : (d + 1) * per]) / per) * sum(p[d * per : (d + 1) * per]) for d in range(n_devices))
    return expert, device


@pytest.mark.parametrize(("top_k", "n_devices"), [(1, 2), (2, 4), (3, 2)])
def test_deepseek_balance_losses_match_the_paper_formulas(top_k: int, n_devices: int) -> None:
    scores = torch.softmax(torch.randn(30, 8, generator=torch.Generator().manual_seed(top_k)) * 2, dim=-1)
    expert, device = _deepseek_by_hand(scores, top_k, n_devices)
    torch.testing.assert_close(deepseek_expert_balance_loss(scores, top_k, alpha1=0.003).item(), 0.003 * expert)
    torch.testing.assert_close(
        deepseek_device_balance_loss(scores, top_k, n_devices, alpha2=0.05).item(), 0.05 * device
    )


@pytest.mark.parametrize("top_k", [1, 2, 6])
def test_deepseek_balance_losses_equal_alpha_when_balanced(top_k: int) -> None:
    n_routed = 8
    base = torch.softmax(torch.arange(n_routed, dtype=torch.float32) * 0.37, dim=-1)
    scores = torch.stack([torch.roll(base, s) for s in range(n_routed)] * 2)
    torch.testing.assert_close(deepseek_expert_balance_loss(scores, top_k, alpha1=0.01), torch.tensor(0.01))
    torch.testing.assert_close(deepseek_device_balance_loss(scores, top_k, 4, alpha2=0.05), torch.tensor(0.05))


def test_deepseek_expert_balance_loss_grows_when_routing_collapses() -> None:
    scores = torch.full((10, 4), 0.01)
    scores[:, 0] = 0.97
    # f_0 = 4/(1*10) * 10 = 4, P_0 = 0.97; the rest are never chosen: loss = alpha * 3.88.
    torch.testing.assert_close(deepseek_expert_balance_loss(scores, 1, alpha1=1.0), torch.tensor(4 * 0.97))
    with pytest.raises(ValueError, match="n_devices"):
        deepseek_device_balance_loss(scores, 1, n_devices=3, alpha2=1.0)
