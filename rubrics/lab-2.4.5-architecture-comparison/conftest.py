"""The lab's tiny models loaded in this trusted process, and text to score.

The models folder on the trusted side is named by $SPARKGRADE_MODELS_TRUSTED (the grader sets it to the same folder
the sandbox loads ``Model(name)`` from). Without it the checks that need a model fail as a grader error."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import pytest
import torch

MODELS_ENV = "SPARKGRADE_MODELS_TRUSTED"


def _load(name: str, dtype: str | None = None):
    root = os.environ.get(MODELS_ENV)
    if not root or not (Path(root) / name).is_dir():
        raise RuntimeError(f"the grader needs the lab's models folder in ${MODELS_ENV} (no model {name!r} there)")
    return _load_from(root, name, dtype)


@cache
def _load_from(root: str, name: str, dtype: str | None):
    from transformers import AutoModelForCausalLM

    kw = {"dtype": getattr(torch, dtype)} if dtype else {}
    return AutoModelForCausalLM.from_pretrained(Path(root) / name, local_files_only=True, **kw).eval()


@pytest.fixture
def trusted_model():
    """``trusted_model(name, dtype=None)``: the model ``Model(name, dtype)`` names, loaded here as the kernel does."""
    return _load


# Real models' config.json fields (FACTS.md sizes), and variations of them.


@pytest.fixture
def text_ids(rng):
    """``text_ids(n)``: n token ids of the lab's held-out prose (the tiny models' tokenizer), from a seeded offset."""
    from transformers import AutoTokenizer

    def make(n: int) -> torch.Tensor:
        root = Path(os.environ.get(MODELS_ENV, ""))
        text = (root / "data" / "corpus" / "prose_valid.txt").read_text()
        ids = AutoTokenizer.from_pretrained(root / "llama").encode(text, return_tensors="pt")[0]
        start = int(torch.randint(0, ids.numel() - n, (1,), generator=rng))
        return ids[start:start + n].unsqueeze(0).clone()

    return make
