"""Shared test set-up: offline, deterministic, and quiet about torch's numpy warning."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Nothing may come from a model hub: the product runs offline and so do its tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest

# One build of the tiny models serves every test (and later runs: the build is skipped while its recipe is unchanged).
TEST_MODELS = Path(os.environ.get("SPARKGRADE_TEST_MODELS", Path(tempfile.gettempdir()) / "sparkgrade-test-models"))


@pytest.fixture(scope="session")
def tiny_models_dir() -> Path:
    """The tiny offline models and their data, as reference.tiny builds them."""
    from reference.tiny import build_models

    build_models(TEST_MODELS)
    return TEST_MODELS


@pytest.fixture(scope="session")
def tiny_models_cache(tiny_models_dir):
    """The same models as the cache every course a test creates links its labs' models from."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SPARKGRADE_MODEL_CACHE", str(tiny_models_dir))
    yield tiny_models_dir
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
