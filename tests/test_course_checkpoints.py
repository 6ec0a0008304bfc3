"""The course's checkpoint configuration: defaults from the labs' notebooks, the instructor's models.yaml, each
lab's released models.json, and spark_checkpoints for `sparkgrade models pull`."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nbformat
import pytest
import torch
import yaml

from autograder.course.checkpoints import (
    LabModels,
    configure_labs,
    load,
    merge_defaults,
    notebook_spark_roles,
    spark_checkpoints,
)
from autograder.errors import UserError

SOURCE = Path(__file__).resolve().parents[1] / "assignments" / "source"
MOE_LAB = "lab-2.4.3-moe-exploration"
COMPARISON_LAB = "lab-2.4.5-architecture-comparison"


def _course_with(tmp_path: Path, *labs: str) -> tuple[Path, dict[str, Path]]:
    notebooks = {}
    for lab in labs:
        folder = tmp_path / "source" / lab
        folder.mkdir(parents=True)
        shutil.copy2(SOURCE / lab / f"{lab}.ipynb", folder / f"{lab}.ipynb")
        notebooks[lab] = folder / f"{lab}.ipynb"
    return tmp_path, notebooks


def test_defaults_are_the_spark_tables_of_the_lab_notebooks() -> None:
    moe = notebook_spark_roles(SOURCE / MOE_LAB / f"{MOE_LAB}.ipynb")
    assert moe["moe"] == "deepseek-ai/deepseek-moe-16b-base"
    assert moe["moe_alt"] == "Qwen/Qwen1.5-MoE-A2.7B"
    comparison = notebook_spark_roles(SOURCE / COMPARISON_LAB / f"{COMPARISON_LAB}.ipynb")
    assert comparison["mamba"] == "state-spaces/mamba-2.8b-hf"
    assert comparison["transformer"] == "meta-llama/Llama-3.2-3B"
    assert comparison["moe"] == "allenai/OLMoE-1B-7B-0924"


def test_init_writes_defaults_and_releases_each_labs_choice(tmp_path: Path) -> None:
    course, notebooks = _course_with(tmp_path, MOE_LAB, COMPARISON_LAB)
    configure_labs(course, notebooks)
    written = yaml.safe_load((course / "models.yaml").read_text())
    assert written[MOE_LAB]["roles"]["moe"] == "deepseek-ai/deepseek-moe-16b-base"
    assert written[MOE_LAB]["trust_remote_code"] == [], "remote code stays off until the instructor enables it"
    released = json.loads((notebooks[COMPARISON_LAB].parent / "models.json").read_text())
    assert released["roles"]["transformer"] == "meta-llama/Llama-3.2-3B"
    assert spark_checkpoints(course)[COMPARISON_LAB] == released["roles"]


def test_an_instructors_choice_survives_init_and_reaches_the_released_file(tmp_path: Path) -> None:
    course, notebooks = _course_with(tmp_path, MOE_LAB)
    configure_labs(course, notebooks)
    config = yaml.safe_load((course / "models.yaml").read_text())
    config[MOE_LAB]["roles"]["moe"] = "/mirror/deepseek-moe-16b-chat"
    config[MOE_LAB]["trust_remote_code"] = ["moe"]
    del config[MOE_LAB]["roles"]["hybrid"]  # a role the instructor dropped comes back with its default
    (course / "models.yaml").write_text(yaml.safe_dump(config))

    configure_labs(course, notebooks)  # `sparkgrade init` run again

    released = json.loads((notebooks[MOE_LAB].parent / "models.json").read_text())
    assert released["roles"]["moe"] == "/mirror/deepseek-moe-16b-chat"
    assert released["roles"]["hybrid"] == "ibm-granite/granite-4.0-h-tiny"
    assert released["trust_remote_code"] == ["moe"]
    assert spark_checkpoints(course)[MOE_LAB]["moe"] == "/mirror/deepseek-moe-16b-chat"


def test_merge_keeps_instructor_roles_and_adds_missing_ones() -> None:
    current = {"lab": LabModels(roles={"moe": "mine/moe"}, trust_remote_code=frozenset({"moe"}))}
    merged = merge_defaults(current, {"lab": {"moe": "default/moe", "hybrid": "default/hybrid"}, "other": {"a": "b"}})
    assert merged["lab"].roles == {"moe": "mine/moe", "hybrid": "default/hybrid"}
    assert merged["lab"].trust_remote_code == {"moe"}
    assert merged["other"].roles == {"a": "b"}


@pytest.mark.parametrize(("text", "message"), [
    ("lab: [1, 2]", "should hold 'roles"),
    ("lab: {roles: {moe: 3}}", "need a model id"),
    ("lab: {roles: {moe: a/b}, trust_remote_code: moe}", "should be a list of roles"),
    ("lab: {roles: {moe: a/b}, trust_remote_code: [hybrid]}", "unknown role(s) hybrid"),
    ("lab: {roles: {moe: a/b}\n  bad", "not valid YAML"),
    ("- just a list", "should map lab ids"),
])
def test_a_malformed_models_yaml_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "models.yaml").write_text(text)
    with pytest.raises(UserError) as err:
        load(tmp_path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_course_without_models_yaml_has_no_checkpoints(tmp_path: Path) -> None:
    assert spark_checkpoints(tmp_path) == {}


def _profile_cell(lab: str) -> str:
    nb = nbformat.read(SOURCE / lab / f"{lab}.ipynb", as_version=4)
    return next(c.source for c in nb.cells if "profile" in c.metadata.get("tags", []))


@pytest.mark.parametrize("lab", [MOE_LAB, COMPARISON_LAB])
def test_the_released_notebook_loads_the_courses_choice_on_spark_only(lab, tmp_path, monkeypatch):
    choice = {"roles": {"moe": "/mirror/my-moe"}, "trust_remote_code": ["moe"]}
    (tmp_path / "models.json").write_text(json.dumps(choice))
    monkeypatch.chdir(tmp_path)  # the notebook runs in its release folder, beside models.json
    for profile, want_moe, want_trusted in (("spark", "/mirror/my-moe", {"moe"}), ("tiny", None, set())):
        ns = {"PROFILE": profile, "MODELS_DIR": tmp_path / "models", "torch": torch, "os": os, "json": json,
              "Path": Path}
        exec(_profile_cell(lab), ns)
        if want_moe:
            assert ns["MODEL_IDS"]["moe"] == want_moe
        else:
            assert ns["MODEL_IDS"]["moe"] == str(tmp_path / "models" / ns["MODEL_IDS"]["moe"].rsplit("/", 1)[-1])
        assert ns["TRUSTED_ROLES"] == want_trusted
