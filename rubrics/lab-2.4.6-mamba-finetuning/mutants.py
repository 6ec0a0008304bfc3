"""Wrong variants of lab 2.4.6's functions that are no diagnosable misconception: the mutation harness
(tests/test_mutation.py) proves every check fails at least one of these or a catalogued mistake."""

from __future__ import annotations

from autograder.checks.api import Misconception

MUTANTS = [
    Misconception("a constant", "count_trainable_parameters", "", lambda model: (9216, 171392)),
    Misconception("a fixed list", "mamba_lora_targets", "", lambda model: ["in_proj", "x_proj"]),
    Misconception("every Linear name in the model", "mamba_lora_targets", "",
                  lambda model: sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                                        if type(m).__name__ == "Linear"})),
]
