"""Known mistakes in lab 2.4.6, as mutated references. The engine names the one the student's outputs match.

The mutants get the arguments the check sent: Model(name) stands for the model, loaded here from
$SPARKGRADE_MODELS_TRUSTED as the sandbox loads it."""

from __future__ import annotations

import torch

from autograder.checks.api import Misconception
from autograder.checks.trusted import as_trusted_model


def _tied_twice(model):
    params = [p for _, p in as_trusted_model(model).named_parameters(remove_duplicate=False)]
    return (sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params))


def _with_buffers(model):
    m = as_trusted_model(model)
    buffers = sum(b.numel() for b in m.buffers())
    params = list(m.parameters())
    return (sum(p.numel() for p in params if p.requires_grad) + buffers, sum(p.numel() for p in params) + buffers)


def _bytes(model):
    params = list(as_trusted_model(model).parameters())
    return (sum(p.numel() * p.element_size() for p in params if p.requires_grad),
            sum(p.numel() * p.element_size() for p in params))


def _requires_grad_ignored(model):
    total = sum(p.numel() for p in as_trusted_model(model).parameters())
    return (total, total)


def _swapped(model):
    params = list(as_trusted_model(model).parameters())
    return (sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad))


def _mixer_children(model, wanted):
    mixer = next(m for m in as_trusted_model(model).modules() if type(m).__name__.endswith("Mixer"))
    return [n for n, c in mixer.named_children() if isinstance(c, torch.nn.Linear) and n in wanted]


MISCONCEPTIONS = [
    Misconception("tied weights counted twice", "count_trainable_parameters",
                  "The Mamba's lm_head IS its embedding matrix (tie_word_embeddings): model.parameters() yields "
                  "it once; named_parameters(remove_duplicate=False) or a state_dict counts it twice.", _tied_twice),
    Misconception("buffers counted as parameters", "count_trainable_parameters",
                  "Buffers (such as rotary inv_freq) are not parameters: they are never trained. Count "
                  "model.parameters() only.", _with_buffers),
    Misconception("bytes instead of elements", "count_trainable_parameters",
                  "Count parameter elements (p.numel()), not their bytes (numel x element_size).", _bytes),
    Misconception("requires_grad ignored", "count_trainable_parameters",
                  "Trainable means p.requires_grad: frozen parameters (a frozen backbone, peft's base model) count in "
                  "the total only. model.num_parameters() counts them all.", _requires_grad_ignored),
    Misconception("(total, trainable) swapped", "count_trainable_parameters",
                  "Return (trainable, total), in that order: the first number is never the larger one.", _swapped),
    Misconception("every Linear of the mixer", "mamba_lora_targets",
                  "peft refuses out_proj for Mamba (the fused kernel reads its weight directly) and an adapter on "
                  "dt_proj gets no gradient (its raw weight is multiplied directly): target in_proj and x_proj.",
                  lambda model: _mixer_children(model, {"in_proj", "x_proj", "dt_proj", "out_proj"})),
    Misconception("dt_proj targeted", "mamba_lora_targets",
                  "transformers multiplies dt_proj.weight directly instead of calling the module, so a LoRA "
                  "adapter on it receives no gradient and never trains.",
                  lambda model: _mixer_children(model, {"in_proj", "x_proj", "dt_proj"})),
    Misconception("in_proj only", "mamba_lora_targets",
                  "x_proj makes the input-dependent delta, B and C (the selection mechanism) and is called as a "
                  "module: adapt it too.", lambda model: _mixer_children(model, {"in_proj"})),
    Misconception("full module paths", "mamba_lora_targets",
                  "peft's target_modules takes the last component of a module's name (in_proj), which matches it "
                  "in every layer; a full path names one layer only.",
                  lambda model: [f"backbone.layers.0.mixer.{n}"
                                 for n in _mixer_children(model, {"in_proj", "x_proj"})]),
]

def _count(model):
    params = list(as_trusted_model(model).parameters())
    return (sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params))


# The course's answers (diagnosis names a mutant only where it differs from them).
REFERENCES = {"count_trainable_parameters": _count,
              "mamba_lora_targets": lambda model: _mixer_children(model, {"in_proj", "x_proj"})}
