"""Hidden checks for count_trainable_parameters(model) -> (trainable, total) and mamba_lora_targets(model).

Models cross into the sandbox as Model(...): the lab's tiny models as loaded, partly or wholly frozen (``freeze``),
wrapped by peft (``lora``), or random tiny architectures built from a config (``config``), drawn from the
submission's generator, so neither ``trainable == total`` nor a fixed list of names can pass."""

from __future__ import annotations

import json

import torch

from autograder.checks.api import CheckFailed, expect_equal
from autograder.sandbox import Model

LAB_TARGETS = ("in_proj", "x_proj")  # the lab's answer (its Q1): called as modules, and they receive a gradient


def pick(rng, options):
    return options[int(torch.randint(len(options), (1,), generator=rng))]


def draw(rng, low, high):
    return int(torch.randint(low, high + 1, (1,), generator=rng))


def counts(student, trusted_model, label, spec: Model):
    got = student.count_trainable_parameters(spec)
    if not isinstance(got, tuple | list) or len(got) != 2:
        raise CheckFailed(f"count_trainable_parameters should return a (trainable, total) tuple, got {got!r}"[:300])
    model = trusted_model(spec)
    want = (sum(p.numel() for p in model.parameters() if p.requires_grad), sum(p.numel() for p in model.parameters()))
    expect_equal(got[1], want[1], name=f"total parameters of {label}")
    expect_equal(got[0], want[0], name=f"trainable parameters of {label}")


def partly_frozen(rng, layers: int, embeddings: str) -> str:
    """A freeze pattern: one or two random layers, maybe the embedding table (tied to the lm_head in the Mamba)."""
    chosen = sorted({draw(rng, 0, layers - 1) for _ in range(draw(rng, 1, 2))})
    parts = [rf"layers\.{i}\." for i in chosen] + ([embeddings] if draw(rng, 0, 1) else [])
    return "|".join(parts)


def test_trainable_mamba(student, trusted_model, rng):
    counts(student, trusted_model, "the mamba model (its lm_head is its embedding matrix)", Model("mamba"))
    layers = trusted_model("mamba").config.num_hidden_layers
    pattern = partly_frozen(rng, layers, "embeddings")
    counts(student, trusted_model, f"the mamba model with parameters matching {pattern!r} frozen",
           Model("mamba", freeze=pattern))
    counts(student, trusted_model, "the mamba model, all frozen", Model("mamba", freeze="."))


def test_trainable_other_models(student, trusted_model, rng):
    counts(student, trusted_model, "the llama model", Model("llama"))
    layers = trusted_model("llama").config.num_hidden_layers
    pattern = partly_frozen(rng, layers, "embed_tokens")
    counts(student, trusted_model, f"the llama model with {pattern!r} frozen", Model("llama", freeze=pattern))
    counts(student, trusted_model, "the mixtral model", Model("mixtral"))
    targets = pick(rng, [("in_proj",), ("in_proj", "x_proj"), ("x_proj",)])
    counts(student, trusted_model, f"the mamba model wrapped by peft (LoRA on {', '.join(targets)})",
           Model("mamba", lora=targets))


def random_mamba(rng, kind: str | None = None) -> tuple[str, Model]:
    """A random tiny Mamba, Mamba-2 or Jamba hybrid (layer count, sizes, attention layout), built from its config."""
    kind = kind or pick(rng, ["mamba", "mamba2", "jamba"])
    hidden, layers, vocab = 16 * draw(rng, 1, 3), draw(rng, 1, 4), draw(rng, 64, 300)
    fields: dict = {"model_type": kind, "hidden_size": hidden, "num_hidden_layers": layers, "vocab_size": vocab}
    if kind == "mamba":
        fields.update(state_size=draw(rng, 2, 8), expand=2, tie_word_embeddings=bool(draw(rng, 0, 1)))
    elif kind == "mamba2":
        heads = pick(rng, [2, 4])
        fields.update(state_size=pick(rng, [4, 8]), expand=2, num_heads=heads, head_dim=2 * hidden // heads,
                      n_groups=1)
    else:
        period = draw(rng, 2, 3)
        fields.update(num_hidden_layers=period * draw(rng, 1, 2), num_attention_heads=4, num_key_value_heads=2,
                      intermediate_size=2 * hidden, attn_layer_period=period,
                      attn_layer_offset=draw(rng, 0, period - 1), expert_layer_period=period,
                      expert_layer_offset=draw(rng, 0, period - 1),
                      num_experts=draw(rng, 1, 3), num_experts_per_tok=1, mamba_d_state=4, mamba_dt_rank=4)
    label = f"a random tiny {kind} ({fields['num_hidden_layers']} layers, hidden {hidden})"
    return label, Model("mamba", config=json.dumps(fields))


def lab_targets(model) -> list[str]:
    """The lab's answer: in_proj and x_proj of the Mamba mixers that have them, in registration order."""
    names: list[str] = []
    for module in model.modules():
        if type(module).__name__.endswith("Mixer"):
            for name, child in module.named_children():
                if name in LAB_TARGETS and isinstance(child, torch.nn.Linear) and name not in names:
                    names.append(name)
    return names


def targets(student, spec: Model):
    got = student.mamba_lora_targets(spec)
    if not isinstance(got, list) or not all(isinstance(t, str) for t in got):
        raise CheckFailed(f"mamba_lora_targets should return a list of str, got {got!r}"[:300])
    return got


def random_mambas(rng) -> list[tuple[str, Model]]:
    """A random Mamba-2 (its mixer has no x_proj) and a random Mamba or Jamba (theirs have): a fixed list of names
    fits one of the two at most, whatever the seed (with one random kind it passed on some seeds only)."""
    return [random_mamba(rng, "mamba2"), random_mamba(rng, pick(rng, ["mamba", "jamba"]))]


def test_lora_targets_mamba(student, trusted_model, rng):
    for label, spec in (("the mamba model", Model("mamba")), *random_mambas(rng)):
        got = targets(student, spec)
        want = lab_targets(trusted_model(spec))
        if sorted(got) != sorted(want):
            extra, missing = sorted(set(got) - set(want)), sorted(set(want) - set(got))
            raise CheckFailed(f"LoRA targets for {label} {got}: " + "; ".join(
                [f"{', '.join(extra)} should not be targeted" if extra else "",
                 f"{', '.join(missing)} is missing" if missing else ""]).strip("; "))
        expect_equal(got, want, name=f"the order of the targets for {label} (as the mixer registers its modules)")


def test_lora_targets_are_module_names(student, trusted_model, rng):
    for label, spec in random_mambas(rng):
        module_names(student, trusted_model, label, spec)


def module_names(student, trusted_model, label: str, spec: Model) -> None:
    got = targets(student, spec)
    model = trusted_model(spec)
    linear = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)} - {"lm_head"}
    wrong = [t for t in got if t not in linear]
    if not got or wrong or len(set(got)) != len(got):
        raise CheckFailed(f"{got} for {label}: give each target once, as the last component of the name of an "
                          f"nn.Linear inside its blocks ({', '.join(sorted(linear))}), as peft's target_modules "
                          f"takes it")
