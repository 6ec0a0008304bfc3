"""The lab's tiny models loaded in this trusted process, and text to score.

The models folder on the trusted side is named by $SPARKGRADE_MODELS_TRUSTED (the grader sets it to the same folder
the sandbox loads ``Model(name)`` from). Without it the checks that need a model fail as a grader error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from autograder.checks import trusted as checks_trusted

# Real models' config.json fields (docs/facts.md, "The models the labs name"), and variations of them.


@pytest.fixture
def text_ids(rng):
    """``text_ids(n)``: n token ids of the lab's held-out prose (the tiny models' tokenizer), from a seeded offset."""
    from transformers import AutoTokenizer

    def make(n: int) -> torch.Tensor:
        root = Path(os.environ.get(checks_trusted.MODELS_ENV, ""))
        text = (root / "data" / "corpus" / "prose_valid.txt").read_text()
        ids = AutoTokenizer.from_pretrained(root / "llama").encode(text, return_tensors="pt")[0]
        start = int(torch.randint(0, ids.numel() - n, (1,), generator=rng))
        return ids[start:start + n].unsqueeze(0).clone()

    return make
