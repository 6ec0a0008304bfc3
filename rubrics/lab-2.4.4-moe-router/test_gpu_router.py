"""GPU checks (a GPU course only, rubric gpu_checks): the router and the losses run on CUDA tensors in the sandbox
and the torch references run on this process's GPU, in bf16 as the spark profile's models produce their logits."""

from __future__ import annotations

import torch

from autograder.checks.api import CheckFailed, expect_close, expect_number, expect_tensor
from reference import load_balancing_loss as reference_lbl
from reference import router_z_loss as reference_z
from reference import top_k_routing as reference_routing


def on_gpu(t: torch.Tensor) -> torch.Tensor:
    if not torch.cuda.is_available():
        raise RuntimeError("a GPU check ran on a grader without CUDA: grade GPU courses on the GPU box")
    return t.cuda()


def test_gpu_routing_matches_reference(student, tol, rng):
    logits = (torch.randn(256, 60, generator=rng) * 3).to(torch.bfloat16)
    want_w, want_e = reference_routing(on_gpu(logits), 4, True)  # the grader's side first: its failure is not theirs
    got = student.top_k_routing(logits, 4, normalize=True)
    if not isinstance(got, tuple | list) or len(got) != 2:
        raise CheckFailed("top_k_routing should return a pair (weights, experts)")
    weights = expect_tensor(got[0], name="weights", shape=(256, 4), dtype=torch.bfloat16)
    experts = expect_tensor(got[1], name="experts", shape=(256, 4)).long()
    order, order_k = torch.argsort(experts, -1), torch.argsort(want_e.cpu(), -1)
    if not torch.equal(torch.gather(experts, -1, order), torch.gather(want_e.cpu(), -1, order_k)):
        raise CheckFailed("on the GPU in bf16, some tokens went to other experts than their 4 most probable ones")
    rtol, atol = tol(torch.bfloat16)
    expect_close(torch.gather(weights, -1, order).float(), torch.gather(want_w.cpu(), -1, order_k).float(),
                 name="weights (bf16 on CUDA)", rtol=rtol, atol=atol, axes=("token", "slot"))


def test_gpu_lbl_matches_reference(student, rng):
    layers = tuple((torch.randn(128, 8, generator=rng) * 2).to(torch.bfloat16) for _ in range(2))
    want = float(reference_lbl(tuple(on_gpu(t) for t in layers), 8, 2))
    expect_number(student.load_balancing_loss(layers, 8, 2), want, name="load-balancing loss (bf16 on CUDA)",
                  rtol=1e-3)


def test_gpu_zloss_matches_reference(student, rng):
    logits = (torch.randn(128, 8, generator=rng) * 10 + 40).to(torch.bfloat16)
    want = float(reference_z(on_gpu(logits)))
    expect_number(student.router_z_loss(logits), want, name="z-loss (bf16 on CUDA)", rtol=1e-3)
