"""Sliding-window perplexity against a one-token-at-a-time brute force on a tiny random Llama."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from reference.perplexity import perplexity

VOCAB = 64


@pytest.fixture(scope="module")
def model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        initializer_range=0.5,  # large random weights: confident, position-sensitive predictions
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def input_ids() -> torch.Tensor:
    return torch.randint(0, VOCAB, (1, 29), generator=torch.Generator().manual_seed(1))


def _window_start(t: int, n: int, max_length: int, stride: int) -> int:
    """First context token for target t of n tokens: targets come in blocks of `stride` (1..stride,
    stride+1..2*stride, ..., the last one cut at n-1), and a block's model input is the max_length tokens before its
    last target."""
    block_end = min(1 + ((t - 1) // stride + 1) * stride, n)  # one past the block's last target
    return max(0, block_end - 1 - max_length)


def _brute_force(model: torch.nn.Module, ids: torch.Tensor, max_length: int, stride: int) -> float:
    """One model call per target t, on exactly its context, reading only the last position's logits."""
    nlls = []
    with torch.no_grad():
        for t in range(1, ids.shape[1]):
            begin = _window_start(t, ids.shape[1], max_length, stride)
            context = ids[:, begin:t]
            assert 1 <= context.shape[1] <= max_length
            logits = model(context).logits[0, -1].double()
            nlls.append(-torch.log_softmax(logits, dim=-1)[ids[0, t]].item())
    return math.exp(sum(nlls) / len(nlls))


def _full_context_brute_force(model: torch.nn.Module, ids: torch.Tensor, max_length: int) -> float:
    """Every target t predicted from the up-to-max_length tokens ending at t-1."""
    nlls = []
    with torch.no_grad():
        for t in range(1, ids.shape[1]):
            logits = model(ids[:, max(0, t - max_length) : t]).logits[0, -1].double()
            nlls.append(-torch.log_softmax(logits, dim=-1)[ids[0, t]].item())
    return math.exp(sum(nlls) / len(nlls))


@pytest.mark.parametrize(("max_length", "stride"), [(8, 8), (8, 3), (8, 5), (10, 10), (7, 1), (32, 4)])
def test_perplexity_matches_per_token_brute_force(
    model: LlamaForCausalLM, input_ids: torch.Tensor, max_length: int, stride: int
) -> None:
    expected = _brute_force(model, input_ids, max_length, stride)
    assert perplexity(model, input_ids, max_length, stride) == pytest.approx(expected, rel=1e-5)


def test_stride_one_gives_every_token_its_full_window(model: LlamaForCausalLM, input_ids: torch.Tensor) -> None:
    expected = _full_context_brute_force(model, input_ids, max_length=6)
    assert perplexity(model, input_ids, max_length=6, stride=1) == pytest.approx(expected, rel=1e-5)


def test_window_size_changes_the_answer(model: LlamaForCausalLM, input_ids: torch.Tensor) -> None:
    # Guards the brute force itself: contexts matter for this model, so a wrong window would be seen.
    short = _full_context_brute_force(model, input_ids, max_length=2)
    long = _full_context_brute_force(model, input_ids, max_length=28)
    assert abs(short - long) / long > 1e-3
    assert perplexity(model, input_ids, 28, 28) == pytest.approx(long, rel=1e-5)


def test_perplexity_accepts_1d_ids_and_rejects_bad_windows(model: LlamaForCausalLM, input_ids: torch.Tensor) -> None:
    assert perplexity(model, input_ids[0], 8, 4) == pytest.approx(perplexity(model, input_ids, 8, 4), rel=1e-12)
    with pytest.raises(ValueError, match="stride"):
        perplexity(model, input_ids, 4, 5)
    with pytest.raises(ValueError, match="2 tokens"):
        perplexity(model, input_ids[:, :1], 4, 2)


class _UniformLM(torch.nn.Module):
    """Predicts all-zero logits: every token has probability 1/vocab."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.calls: list[int] = []
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward(self, input_ids: torch.Tensor) -> SimpleNamespace:
        self.calls.append(input_ids.shape[1])
        return SimpleNamespace(logits=torch.zeros(*input_ids.shape, self.vocab) + self.anchor)


@pytest.mark.parametrize(("max_length", "stride"), [(5, 5), (5, 2), (50, 50)])
def test_uniform_model_perplexity_is_vocab_size(max_length: int, stride: int) -> None:
    lm = _UniformLM(vocab=37)
    ids = torch.randint(0, 37, (1, 23), generator=torch.Generator().manual_seed(2))
    assert perplexity(lm, ids, max_length, stride) == pytest.approx(37.0, rel=1e-6)  # log-softmax runs in fp32
    assert max(lm.calls) <= max_length  # the model never reads more than max_length tokens
