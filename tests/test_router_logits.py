"""Lab 2.4.4 unpacks (logits, weights, experts) from transformers' *TopKRouter modules and reads
outputs.router_logits as logits. That holds only from transformers 5.6.0 on (PR #45131; before it the routers returned
softmax probabilities in the logits slot, and the lab's load-balancing loss became softmax(softmax(x)) without an
error). Proven here on the tiny MoE models the labs use, so a transformers outside the pinned range fails a test."""

from __future__ import annotations

import pytest
import torch
from packaging.version import Version

TINY_MOE = ["mixtral", "qwen2-moe"]


def check_router_output(router, h: torch.Tensor, normalized: bool) -> None:
    """The contract the lab relies on; raises AssertionError naming what broke."""
    out = router(h)
    assert isinstance(out, tuple) and len(out) == 3, f"{type(router).__name__} returns {type(out).__name__}"
    logits, weights, experts = out
    k = experts.shape[-1]
    torch.testing.assert_close(logits.float(), (h @ router.weight.T).float(), rtol=1e-5, atol=1e-5,
                               msg="the first output is not W_g h: not logits")
    probs = torch.softmax(logits.float(), -1)
    top, chosen = probs.topk(k, -1)
    assert torch.equal(torch.sort(experts, -1).values, torch.sort(chosen, -1).values), "experts are not the top-k"
    want = top / top.sum(-1, keepdim=True) if normalized else top
    order = torch.argsort(experts, -1)
    torch.testing.assert_close(torch.gather(weights.float(), -1, order),
                               torch.gather(want, -1, torch.argsort(chosen, -1)), rtol=1e-4, atol=1e-5,
                               msg="the weights are not softmax(logits) at the chosen experts")


@pytest.fixture(scope="module")
def models(tiny_models_dir):
    from transformers import AutoModelForCausalLM

    return {name: AutoModelForCausalLM.from_pretrained(tiny_models_dir / name, local_files_only=True).eval()
            for name in TINY_MOE}


def test_the_installed_transformers_is_in_the_pinned_range():
    import transformers

    assert Version(transformers.__version__) >= Version("5.6.0"), "pyproject pins transformers>=5.6.0 (PR #45131)"


@pytest.mark.parametrize("name", TINY_MOE)
def test_every_router_returns_logits_weights_experts_as_the_lab_unpacks_them(models, name):
    model = models[name]
    routers = {n: m for n, m in model.named_modules()
               if n.endswith("mlp.gate") and getattr(m, "weight", None) is not None and m.weight.dim() == 2}
    assert routers, "no *TopKRouter at .mlp.gate: the lab's router-weights cell would find nothing"
    normalized = bool(getattr(model.config, "norm_topk_prob", True))  # Mixtral renormalises; Qwen2-MoE by config
    h = torch.randn(24, model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for router in routers.values():
            check_router_output(router, h, normalized)
        # outputs.router_logits, as the lab reads it, is what W_g h of the block's input gives (max diff ~0)
        first = next(iter(routers))
        block = model.get_submodule(first.rsplit(".", 1)[0])
        seen = {}
        hook = block.register_forward_pre_hook(lambda mod, args: seen.update(h=args[0].detach()))
        ids = torch.randint(3, model.config.vocab_size, (1, 16), generator=torch.Generator().manual_seed(1))
        out = model(input_ids=ids, output_router_logits=True)
        hook.remove()
        hidden = seen["h"].reshape(-1, seen["h"].shape[-1])
        torch.testing.assert_close(out.router_logits[0].float(), (hidden @ routers[first].weight.T).float(),
                                   rtol=1e-5, atol=1e-5)


def test_a_router_returning_probabilities_as_before_pr_45131_is_caught(models):
    router = next(m for n, m in models["mixtral"].named_modules() if n.endswith("mlp.gate"))

    class OldRouter(torch.nn.Module):  # transformers <= 5.5: softmax in the logits slot
        def __init__(self, inner):
            super().__init__()
            self.inner, self.weight = inner, inner.weight

        def forward(self, h):
            logits, weights, experts = self.inner(h)
            return torch.softmax(logits.float(), -1), weights, experts

    h = torch.randn(8, router.weight.shape[1], generator=torch.Generator().manual_seed(2))
    with torch.no_grad(), pytest.raises(AssertionError, match="not logits"):
        check_router_output(OldRouter(router), h, True)
