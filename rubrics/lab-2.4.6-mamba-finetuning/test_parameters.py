"""Hidden checks for count_trainable_parameters(model) -> (trainable, total) and mamba_lora_targets(model).

Models cross into the sandbox as Model(name): freshly loaded, so every weight is trainable and trainable == total.
What can be told apart that way: tied weights counted once, parameters not buffers, elements not bytes."""

from __future__ import annotations

import torch

from autograder.checks.api import CheckFailed, expect_equal
from autograder.sandbox import Model

LAB_TARGETS = ["in_proj", "x_proj"]  # the lab's answer (its Q1): called as modules, and they receive a gradient


def counts(student, trusted_model, name):
    got = student.count_trainable_parameters(Model(name))
    if not isinstance(got, tuple | list) or len(got) != 2:
        raise CheckFailed(f"count_trainable_parameters should return a (trainable, total) tuple, got {got!r}"[:300])
    model = trusted_model(name)
    want = (sum(p.numel() for p in model.parameters() if p.requires_grad), sum(p.numel() for p in model.parameters()))
    expect_equal(got[1], want[1], name=f"total parameters of the {name} model")
    expect_equal(got[0], want[0], name=f"trainable parameters of the {name} model")


def test_trainable_mamba(student, trusted_model):
    counts(student, trusted_model, "mamba")


def test_trainable_other_models(student, trusted_model):
    counts(student, trusted_model, "llama")
    counts(student, trusted_model, "mixtral")


def targets(student):
    got = student.mamba_lora_targets(Model("mamba"))
    if not isinstance(got, list) or not all(isinstance(t, str) for t in got):
        raise CheckFailed(f"mamba_lora_targets should return a list of str, got {got!r}"[:300])
    return got


def test_lora_targets_mamba(student, trusted_model):
    got = targets(student)
    mixer = trusted_model("mamba").backbone.layers[0].mixer
    want = [name for name, _ in mixer.named_children() if name in LAB_TARGETS]  # registration order
    if sorted(got) != sorted(want):
        extra, missing = sorted(set(got) - set(want)), sorted(set(want) - set(got))
        raise CheckFailed(f"LoRA targets {got}: " + "; ".join(
            [f"{', '.join(extra)} should not be targeted" if extra else "",
             f"{', '.join(missing)} is missing" if missing else ""]).strip("; "))
    expect_equal(got, want, name="the order of the targets (as the mixer registers its modules)")


def test_lora_targets_are_module_names(student, trusted_model):
    got = targets(student)
    model = trusted_model("mamba")
    linear = {n.rsplit(".", 1)[-1] for n, m in model.backbone.named_modules() if isinstance(m, torch.nn.Linear)}
    wrong = [t for t in got if t not in linear]
    if not got or wrong or len(set(got)) != len(got):
        raise CheckFailed(f"{got}: give each target once, as the last component of the name of an nn.Linear inside "
                          f"the Mamba blocks ({', '.join(sorted(linear))}), as peft's target_modules takes it")
