"""Lab 2.4.5's evaluation text: WikiText-2 (raw, test split) through `datasets` on the spark profile, the tiny models'
own prose on the tiny profile, which must never import `datasets` (not installed there, and offline)."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "assignments" / "labs"))
import lab_2_4_5


def _settings(profile: str, models_dir: Path) -> dict:
    ns: dict = {"PROFILE": profile, "MODELS_DIR": models_dir, "os": os, "Path": Path}
    exec(lab_2_4_5.EVAL_SETTINGS, ns)
    return ns


@pytest.fixture
def fake_datasets(monkeypatch):
    calls = []

    def load_dataset(*args, **kwargs):
        calls.append((args, kwargs))
        return {"text": [" = Robert Boulter = \n", "", " Robert Boulter is an English actor . \n"]}

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    monkeypatch.delenv("SPARKGRADE_EVAL_TEXT", raising=False)
    return calls


def test_spark_profile_reads_wikitext2_raw_test_split(fake_datasets, tmp_path):
    text = _settings("spark", tmp_path)["load_eval_text"]()
    assert fake_datasets == [(("Salesforce/wikitext", "wikitext-2-raw-v1"), {"split": "test"})]
    assert text == " = Robert Boulter = \n\n\n\n\n Robert Boulter is an English actor . \n"


def test_tiny_profile_reads_its_own_prose_and_never_imports_datasets(fake_datasets, tmp_path, monkeypatch):
    (tmp_path / "data" / "corpus").mkdir(parents=True)
    (tmp_path / "data" / "corpus" / "prose_valid.txt").write_text("the cat walks to the door.")
    monkeypatch.setitem(sys.modules, "datasets", None)  # an import would raise ImportError
    assert _settings("tiny", tmp_path)["load_eval_text"]() == "the cat walks to the door."


def test_a_local_file_replaces_the_dataset_on_a_machine_without_network(fake_datasets, tmp_path, monkeypatch):
    (tmp_path / "wiki.test.raw").write_text("local text")
    monkeypatch.setenv("SPARKGRADE_EVAL_TEXT", str(tmp_path / "wiki.test.raw"))
    assert _settings("spark", tmp_path)["load_eval_text"]() == "local text"
    assert fake_datasets == []


def test_loading_the_profile_fetches_nothing(fake_datasets, tmp_path):
    _settings("spark", tmp_path)
    assert fake_datasets == [], "the profile cell only defines load_eval_text; the helpers cell calls it"
