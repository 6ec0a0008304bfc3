"""Shared test set-up: offline, deterministic, and quiet about torch's numpy warning."""

from __future__ import annotations

import os

# Nothing may come from a model hub: the product runs offline and so do its tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


import pytest


@pytest.fixture(scope="session")
def tiny_models_cache(tmp_path_factory):
    """The tiny offline models, built once per test session and shared by every course a test creates."""
    from reference.tiny import build_models

    cache = tmp_path_factory.mktemp("tiny-models")
    build_models(cache)
    mp = pytest.MonkeyPatch()
    mp.setenv("SPARKGRADE_MODEL_CACHE", str(cache))
    yield cache
    mp.undo()


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """The toy lab (tests/toylab.py) installed as the only lab the engine sees."""
    from toylab import make_toy_lab

    root = make_toy_lab(tmp_path_factory.mktemp("toy"))
    mp = pytest.MonkeyPatch()
    mp.setenv("SPARKGRADE_RUBRICS", str(root / "rubrics"))
    mp.setenv("SPARKGRADE_ASSIGNMENTS", str(root / "assignments"))
    yield root
    mp.undo()
