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


# `make test` runs the suite on several pytest-xdist workers with `--dist loadgroup`. A module whose module-scoped
# fixture is expensive (a sandbox kept open for many tests, a whole nbgrader cycle, a built wheel) keeps its tests on
# one worker, so that fixture is built once; test_sandbox is split by its cold/warm parameter, two groups that run
# side by side. Every other test goes to whichever worker is free.
_ONE_WORKER_MODULES = {"test_sandbox", "test_workflow", "test_packaging", "test_feedback", "test_course_hardware"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = item.module.__name__ if item.module is not None else ""
        if module not in _ONE_WORKER_MODULES:
            continue
        callspec = getattr(item, "callspec", None)
        group = module
        if callspec is not None and "warm" in callspec.params:
            group += "-warm" if callspec.params["warm"] else "-cold"
        item.add_marker(pytest.mark.xdist_group(group))
