"""`sparkgrade models pull`: the spark checkpoints land where the labs read them (SPARKGRADE_HUB_ROOT/org/name),
each once, with sizes, and an interrupted pull resumes. A fake downloader stands in for the hub (no network here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from autograder import cli
from autograder.course.models import MARKER, pull, spark_checkpoints_from_sources
from autograder.errors import UserError
from autograder.paths import assignments_root

CHECKPOINTS = {"lab-a": {"mamba": "state-spaces/mamba-2.8b-hf", "transformer": "EleutherAI/pythia-2.8b"},
               "lab-b": {"moe": "Qwen/Qwen1.5-MoE-A2.7B", "again": "state-spaces/mamba-2.8b-hf"}}


class FakeHub:
    """snapshot_download's contract: files appear under local_dir; a dry run lists what would be fetched."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[str] = []
        self.allowed: dict[str, list[str]] = {}
        self.fail_on = fail_on

    def __call__(self, repo_id, local_dir, allow_patterns=None, dry_run=False):
        if dry_run:
            return [type("F", (), {"file_size": 5_000_000_000, "will_download": True})()]
        self.calls.append(repo_id)
        self.allowed[repo_id] = list(allow_patterns or [])
        local = Path(local_dir)
        (local / "config.json").write_text("{}")
        if repo_id == self.fail_on:
            (local / "model.safetensors.incomplete").write_bytes(b"x" * 10)
            raise ConnectionError("network dropped")
        (local / "model.safetensors").write_bytes(b"w" * 1000)
        return str(local)


def test_each_checkpoint_is_pulled_once_into_the_labs_mirror_with_its_size(tmp_path):
    hub, lines = FakeHub(), []
    pulled = pull(CHECKPOINTS, tmp_path, downloader=hub, say=lines.append)
    assert sorted(hub.calls) == ["EleutherAI/pythia-2.8b", "Qwen/Qwen1.5-MoE-A2.7B", "state-spaces/mamba-2.8b-hf"]
    mamba = next(p for p in pulled if p.model_id == "state-spaces/mamba-2.8b-hf")
    assert mamba.path == tmp_path / "state-spaces" / "mamba-2.8b-hf" and mamba.labs == ("lab-a", "lab-b")
    assert mamba.size_bytes == 1002 and (mamba.path / MARKER).is_file()
    assert any("downloading 5.0 GB" in line for line in lines) and any("done, 1.0 KB" in line for line in lines)
    # the labs' own resolver finds it there
    spec = importlib.util.spec_from_file_location("labkit_for_test", assignments_root() / "labkit.py")
    labkit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(labkit)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPARKGRADE_HUB_ROOT", str(tmp_path))
        assert labkit.resolve_model_id("state-spaces/mamba-2.8b-hf") == str(mamba.path)


def test_a_second_pull_downloads_nothing_and_an_interrupted_one_resumes(tmp_path):
    pull(CHECKPOINTS, tmp_path, labs=["lab-a"], downloader=FakeHub())
    with pytest.raises(ConnectionError):
        pull(CHECKPOINTS, tmp_path, labs=["lab-b"], downloader=FakeHub(fail_on="Qwen/Qwen1.5-MoE-A2.7B"))
    assert not (tmp_path / "Qwen" / "Qwen1.5-MoE-A2.7B" / MARKER).exists()  # not counted as pulled
    hub = FakeHub()
    pulled = pull(CHECKPOINTS, tmp_path, labs=["lab-b"], downloader=hub)
    assert {p.model_id: p.status for p in pulled} == {"Qwen/Qwen1.5-MoE-A2.7B": "downloaded",
                                                      "state-spaces/mamba-2.8b-hf": "present"}
    assert hub.calls == ["Qwen/Qwen1.5-MoE-A2.7B"]  # the downloader is called again; it resumes its own partial files
    again = FakeHub()
    assert {p.status for p in pull(CHECKPOINTS, tmp_path, downloader=again)} == {"present"}
    assert again.calls == []


def test_an_unknown_lab_is_one_line(tmp_path):
    with pytest.raises(UserError, match="no spark checkpoints for lab-z"):
        pull(CHECKPOINTS, tmp_path, labs=["lab-z"], downloader=FakeHub())


def test_the_labs_spark_ids_are_read_from_their_profile_cells():
    ids = spark_checkpoints_from_sources(assignments_root() / "source")
    assert ids["lab-2.4.4-moe-router"] == {"moe": "Qwen/Qwen1.5-MoE-A2.7B"}
    assert ids["lab-2.4.1-mamba-inference"]["mamba"] == "state-spaces/mamba-2.8b-hf"
    assert all("/" in m for lab in ids.values() for m in lab.values())


def test_models_pull_command_prints_sizes_and_where_to_point_the_labs(tmp_path, monkeypatch, capsys):
    import huggingface_hub

    hub = FakeHub()
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub)
    assert cli.main(["models", "pull", "--lab", "lab-2.4.4-moe-router", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert hub.calls == ["Qwen/Qwen1.5-MoE-A2.7B"]
    assert "1 checkpoint(s), 1.0 KB" in out and f"export SPARKGRADE_HUB_ROOT={tmp_path}" in out


def test_models_pull_takes_the_courses_models_yaml_with_code_only_for_trusted_roles(tmp_path, monkeypatch, capsys):
    import huggingface_hub
    import yaml

    course = tmp_path / "course"
    course.mkdir()
    (course / "models.yaml").write_text(yaml.safe_dump({
        "lab-2.4.3-moe-exploration": {"roles": {"moe": "deepseek-ai/deepseek-moe-16b-base",
                                                "moe_alt": "Qwen/Qwen1.5-MoE-A2.7B"},
                                      "trust_remote_code": ["moe"]},
        "lab-2.4.5-architecture-comparison": {"roles": {"mamba": str(tmp_path / "mirror" / "my-mamba"),
                                                        "transformer": "meta-llama/Llama-3.2-3B"}},
    }))
    hub = FakeHub()
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub)
    assert cli.main(["models", "pull", "--course", str(course), "--root", str(tmp_path / "hub")]) == 0
    out = capsys.readouterr().out
    assert sorted(hub.calls) == ["Qwen/Qwen1.5-MoE-A2.7B", "deepseek-ai/deepseek-moe-16b-base",
                                 "meta-llama/Llama-3.2-3B"], "exactly the course's choice; the local folder is skipped"
    assert "*.py" in hub.allowed["deepseek-ai/deepseek-moe-16b-base"], "a trusted role needs its modelling code"
    assert "*.py" not in hub.allowed["Qwen/Qwen1.5-MoE-A2.7B"] and "*.py" not in hub.allowed["meta-llama/Llama-3.2-3B"]
    assert "my-mamba: a local folder" in out and "3 checkpoint(s)" in out


def test_models_pull_of_a_course_without_models_yaml_reads_its_lab_sources(tmp_path, monkeypatch, capsys):
    import huggingface_hub

    lab = "lab-2.4.4-moe-router"
    (tmp_path / "source" / lab).mkdir(parents=True)
    src = assignments_root() / "source" / lab / f"{lab}.ipynb"
    (tmp_path / "source" / lab / f"{lab}.ipynb").write_bytes(src.read_bytes())
    hub = FakeHub()
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub)
    assert cli.main(["models", "pull", "--course", str(tmp_path), "--root", str(tmp_path / "hub")]) == 0
    assert hub.calls == ["Qwen/Qwen1.5-MoE-A2.7B"]
