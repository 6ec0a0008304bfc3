"""Every lab notebook (one per rubric on disk): they validate, run top to bottom in the tiny profile, release
cleanly, and the spark profile's loading path works against local checkpoints named like hub ids (no network).

Models are built once per session into a tmp dir (SPARKGRADE_MODELS) with reference.tiny.build_models; labs whose
notebook does not exist yet are skipped with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from autograder.paths import rubrics_root

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = ROOT / "assignments"
# A lab is data: every rubric on disk names a lab whose notebook these tests run (a new lab needs no edit here).
LAB_IDS = sorted(p.parent.name for p in rubrics_root().glob("*/rubric.yaml"))
TINY_BUDGET_S = 120
VENV_BIN = Path(sys.executable).parent


def source_notebook(lab_id: str) -> Path:
    path = ASSIGNMENTS / "source" / lab_id / f"{lab_id}.ipynb"
    if not path.exists():
        pytest.skip(f"{lab_id}: no source notebook yet ({path.relative_to(ROOT)})")
    return path


@pytest.fixture(scope="session")
def models_dir(tiny_models_dir) -> Path:
    return tiny_models_dir


def _env(models_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, SPARKGRADE_MODELS=str(models_dir), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_HUB_DISABLE_PROGRESS_BARS="1", PYTHONWARNINGS="ignore",
               PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")  # nbgrader runs the venv's alembic
    env.update(extra)
    return env


def _execute(nb, cwd: Path, env: dict[str, str], allow_errors: bool = False, timeout: int = 300):
    """Run a notebook in place with nbclient in a kernel that sees ``env``."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # the kernel inherits the environment of the process that starts it
    try:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=allow_errors,
                                resources={"metadata": {"path": str(cwd)}})
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return nb


def _errors(nb) -> list[tuple[int, str, str]]:
    return [(i, out.get("ename", ""), out.get("evalue", ""))
            for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
            for out in cell.get("outputs", []) if out.get("output_type") == "error"]


def _copy_lab(lab_id: str, dest: Path) -> Path:
    shutil.copytree(ASSIGNMENTS / "source" / lab_id, dest, ignore=shutil.ignore_patterns("benchmarks.json", "*.tmp"))
    return dest / f"{lab_id}.ipynb"


# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lab_id", LAB_IDS)
def test_source_notebook_has_nbgrader_cells(lab_id):
    nb = nbformat.read(source_notebook(lab_id), as_version=4)
    meta = [c.metadata.get("nbgrader", {}) for c in nb.cells]
    solutions = [m for m, c in zip(meta, nb.cells, strict=True) if m.get("solution") and c.cell_type == "code"]
    assert solutions, "a lab has at least one student-implemented function"
    for m, cell in zip(meta, nb.cells, strict=True):
        if m.get("solution") and cell.cell_type == "code":
            assert f"def {m['grade_id']}(" in cell.source, f"solution cell {m['grade_id']} must define that function"
            assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source
    assert any(m.get("grade") and not m.get("solution") for m in meta), "visible tests are locked grade cells"
    assert any(m.get("grade") and m.get("solution") and m.get("points", 0) > 0 for m in meta), "written answers"
    assert sum("parameters" in c.metadata.get("tags", []) for c in nb.cells) == 1, "exactly one parameters cell"
    ids = [m["grade_id"] for m in meta if m]
    assert len(ids) == len(set(ids)), "grade_ids are unique"


@pytest.mark.slow
@pytest.mark.parametrize("lab_id", LAB_IDS)
def test_source_notebook_runs_in_tiny_profile(lab_id, models_dir, tmp_path):
    path = _copy_lab(lab_id, tmp_path / lab_id)
    nb = nbformat.read(path, as_version=4)
    start = time.monotonic()
    _execute(nb, path.parent, _env(models_dir))
    elapsed = time.monotonic() - start
    assert not _errors(nb)
    # measured and printed, not asserted: wall time on a loaded machine is no verdict on the notebook
    print(f"{lab_id}: {elapsed:.1f} s in the tiny profile (budget {TINY_BUDGET_S} s)")
    bench = path.parent / "benchmarks.json"
    if bench.exists():
        for record in json.loads(bench.read_text()):
            assert record["architecture"] in {"transformer", "mamba", "moe", "hybrid"}
            assert record["peak_mem_bytes"] > 0 and record["decode_tok_s"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("lab_id", LAB_IDS)
def test_nbgrader_validate_passes_on_source(lab_id, models_dir, tmp_path):
    path = _copy_lab(lab_id, tmp_path / lab_id)
    result = subprocess.run([str(VENV_BIN / "nbgrader"), "validate", path.name], cwd=path.parent,
                            env=_env(models_dir), capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Success! Your notebook passes all the tests." in output, output


@pytest.fixture(scope="session")
def release_root(tmp_path_factory) -> Path:
    """A course with the course's nbgrader_config.py; the labs are released with `nbgrader generate_assignment`."""
    course = tmp_path_factory.mktemp("course")
    shutil.copy(ASSIGNMENTS / "nbgrader_config.py", course / "nbgrader_config.py")
    (course / "source").mkdir()
    return course


def _release(lab_id: str, course: Path) -> Path:
    """`nbgrader generate_assignment` in the course (nbgrader's own ClearSolutions, LockCells, checksums)."""
    source_notebook(lab_id)
    shutil.copytree(ASSIGNMENTS / "source" / lab_id, course / "source" / lab_id, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("benchmarks.json"))
    result = subprocess.run([str(VENV_BIN / "nbgrader"), "generate_assignment", lab_id, "--force"], cwd=course,
                            env=_env(course), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return course / "release" / lab_id / f"{lab_id}.ipynb"


@pytest.mark.parametrize("lab_id", LAB_IDS)
def test_release_notebook_holds_no_solution(lab_id, release_root):
    released = nbformat.read(_release(lab_id, release_root), as_version=4)
    source = nbformat.read(source_notebook(lab_id), as_version=4)
    for before, after in zip(source.cells, released.cells, strict=True):
        meta = before.metadata.get("nbgrader", {})
        if not meta.get("solution"):
            continue
        assert "BEGIN SOLUTION" not in after.source
        if before.cell_type == "code":
            assert "raise NotImplementedError(" in after.source
            assert f"def {meta['grade_id']}(" in after.source, "the signature and docstring stay"
            body = before.source.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0]
            solution_lines = [ln.strip() for ln in body.splitlines() if len(ln.strip()) > 12]
            assert not any(ln in after.source for ln in solution_lines), f"solution code left in {meta['grade_id']}"
        else:
            assert after.source.strip() == "YOUR ANSWER HERE"


@pytest.mark.slow
@pytest.mark.parametrize("lab_id", LAB_IDS)
def test_release_notebook_fails_its_tests_with_not_implemented(lab_id, release_root, models_dir, tmp_path):
    released = _release(lab_id, release_root)
    work = tmp_path / lab_id
    shutil.copytree(released.parent, work)
    nb = nbformat.read(work / released.name, as_version=4)
    _execute(nb, work, _env(models_dir), allow_errors=True)
    errors = _errors(nb)
    unexpected = [e for e in errors if e[1] != "NotImplementedError"]
    assert not unexpected, f"cells failed for another reason than a missing function: {unexpected}"
    for i, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            assert any(e[0] == i for e in errors), f"visible test {meta['grade_id']} passed without an implementation"
            assert any("not implemented" in e[2] for e in errors if e[0] == i)


# ---------------------------------------------------------------------------------------------------------------
# The spark profile's loading path, offline: tiny checkpoints of the real architectures saved under folders named
# like the hub ids, SPARKGRADE_HUB_ROOT pointing at them, the notebook's own parameters/setup/profile cells run with
# PROFILE = "spark", then every model of MODEL_IDS loaded with the notebook's load_model.

_SPARK_STAND_INS = {
    "state-spaces/mamba-2.8b-hf": ("MambaConfig", dict(hidden_size=64, num_hidden_layers=2, state_size=16)),
    "EleutherAI/pythia-2.8b": ("GPTNeoXConfig", dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                                     intermediate_size=128)),
    "Qwen/Qwen1.5-MoE-A2.7B": ("Qwen2MoeConfig", dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                                      num_key_value_heads=2, intermediate_size=128,
                                                      moe_intermediate_size=32, shared_expert_intermediate_size=64,
                                                      num_experts=8, num_experts_per_tok=4)),
    "meta-llama/Llama-3.2-3B": ("LlamaConfig", dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                                     num_key_value_heads=2, intermediate_size=128,
                                                     tie_word_embeddings=True)),
    "allenai/OLMoE-1B-7B-0924": ("OlmoeConfig", dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                                      intermediate_size=32, num_experts=8, num_experts_per_tok=2)),
    # DeepSeekMoE's own checkpoint needs remote code; its stand-in is the native class of the same MoE shape.
    "deepseek-ai/deepseek-moe-16b-base": ("DeepseekV2Config", dict(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, moe_intermediate_size=16,
        n_routed_experts=8, n_shared_experts=2, num_experts_per_tok=2, first_k_dense_replace=1, q_lora_rank=None,
        kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=8)),
    "ibm-granite/granite-4.0-h-tiny": ("GraniteMoeHybridConfig", dict(
        hidden_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
        num_local_experts=4, num_experts_per_tok=2, shared_intermediate_size=64, mamba_n_heads=4, mamba_d_head=32,
        mamba_d_state=16, mamba_n_groups=1, layer_types=["mamba", "mamba", "attention", "mamba"])),
}


@pytest.fixture(scope="session")
def hub_root(tmp_path_factory, models_dir) -> Path:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("hub-mirror")
    tokenizer = AutoTokenizer.from_pretrained(models_dir / "mamba")
    torch.manual_seed(0)
    for hub_id, (config_class, kwargs) in _SPARK_STAND_INS.items():
        config = getattr(transformers, config_class)(vocab_size=len(tokenizer), **kwargs)
        AutoModelForCausalLM.from_config(config).save_pretrained(root / hub_id)
        tokenizer.save_pretrained(root / hub_id)
    return root


_SPARK_PROBE = """
import json as _json
_loaded = {}
for _name, _id in MODEL_IDS.items():
    _model, _tok = load_model(_id, DTYPE, DEVICE)
    _loaded[_name] = dict(id=_id, cls=type(_model).__name__, dtype=str(next(_model.parameters()).dtype),
                          path=str(_model.name_or_path), arch=architecture_of(_model.config))
print("SPARK-PROBE " + _json.dumps(_loaded))
"""


@pytest.mark.slow
@pytest.mark.parametrize("lab_id", LAB_IDS)
def test_spark_profile_loads_local_checkpoints_named_like_hub_ids(lab_id, hub_root, models_dir, tmp_path):
    nb = nbformat.read(source_notebook(lab_id), as_version=4)
    keep = [c for c in nb.cells if {"parameters", "setup", "profile"} & set(c.metadata.get("tags", []))]
    if not any("profile" in c.metadata.get("tags", []) for c in keep):
        pytest.skip(f"{lab_id}: no cell tagged 'profile'")
    params = nbformat.v4.new_code_cell('PROFILE = "spark"')  # papermill-style injection after the parameters cell
    nb.cells = [keep[0], params, *keep[1:], nbformat.v4.new_code_cell(_SPARK_PROBE)]
    env = _env(models_dir, SPARKGRADE_HUB_ROOT=str(hub_root), SPARKGRADE_DEVICE="cpu", HF_HOME=str(tmp_path / "hf"))
    _execute(nb, tmp_path, env)
    assert not _errors(nb)
    line = next(o["text"] for o in nb.cells[-1].outputs if "SPARK-PROBE" in o.get("text", ""))
    loaded = json.loads(line.split("SPARK-PROBE ", 1)[1])
    assert loaded, "the spark profile names models"
    for name, info in loaded.items():
        assert "/" in info["id"] and not info["id"].startswith(("/", ".")), f"{name}: spark must use a hub id"
        assert info["dtype"] == "torch.bfloat16", f"{name}: spark loads bf16"
        assert Path(info["path"]).is_relative_to(hub_root), f"{name} did not come from the local mirror: {info}"
