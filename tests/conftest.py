"""Shared test set-up: offline, deterministic, and quiet about torch's numpy warning."""

from __future__ import annotations

import os

# Nothing may come from a model hub: the product runs offline and so do its tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
