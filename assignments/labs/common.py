"""Cells the three labs of this builder share: title block, parameters cell, setup cell, profile cell."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import labkit
from nbbuild import code, locked, visible_tests

SOURCE_ROOT = Path(__file__).resolve().parents[1] / "source"


def parameters_cell():
    """The papermill-style parameters cell: the profile switch and where the tiny models live."""
    return code(
        '''
        # Parameters. "tiny": CPU, offline, tiny models, short contexts (the whole notebook in under 2 minutes).
        #             "spark": the real checkpoints in bf16 on CUDA, contexts 4K to 32K (a DGX Spark or any big GPU).
        import os
        from pathlib import Path

        PROFILE = "tiny"
        MODELS_DIR = Path(os.environ.get("SPARKGRADE_MODELS", "models"))  # `sparkgrade init` builds models/ here
        ''',
        tags=["parameters"],
    )


def setup_cell(*extra):
    """Locked cell with the shared helpers (labkit) inlined; offline mode for the tiny profile before any HF import."""
    head = (
        "# Lab helpers (read them; do not edit). The tiny profile never touches the network.\n"
        'if PROFILE == "tiny":\n'
        '    os.environ["HF_HUB_OFFLINE"] = "1"\n\n'
    )
    return locked("setup", head + labkit.common_source(*extra), tags=["setup"])


def profile_cell(tiny: dict, spark: dict, extra: str = ""):
    """Locked cell: the profile table. ``tiny``/``spark`` map a role to a model folder name / hub id."""
    tiny_ids = ",\n".join(f'        "{k}": str(MODELS_DIR / "{v}")' for k, v in tiny.items())
    spark_ids = ",\n".join(f'        "{k}": "{v}"' for k, v in spark.items())
    src = f'''
# The two profiles go through the same code; only this table differs.
PROFILES = {{
    "tiny": dict(model_ids={{
{tiny_ids},
    }}, dtype=torch.float32, device="cpu"),
    "spark": dict(model_ids={{
{spark_ids},
    }}, dtype=torch.bfloat16, device=os.environ.get("SPARKGRADE_DEVICE", "cuda")),
}}
if PROFILE not in PROFILES:
    raise ValueError(f"PROFILE must be one of {{list(PROFILES)}}, not {{PROFILE!r}}")
MODEL_IDS = PROFILES[PROFILE]["model_ids"]
DTYPE = PROFILES[PROFILE]["dtype"]
DEVICE = torch.device(PROFILES[PROFILE]["device"])
torch.manual_seed(0)
{extra}
print(f"profile {{PROFILE}}: {{DTYPE}} on {{DEVICE}}; models {{MODEL_IDS}}")
'''
    return locked("profile", src, tags=["profile"])


COURSE_MODELS = """
# The course's checkpoints: `sparkgrade init` writes the course's models.yaml choice for this lab to models.json
# beside the notebook; on the spark profile it replaces the defaults above. Only the roles it lists under
# trust_remote_code may run the modelling code their checkpoint ships.
TRUSTED_ROLES = set()
if PROFILE == "spark" and Path("models.json").is_file():
    _course_models = json.loads(Path("models.json").read_text())
    MODEL_IDS = {**MODEL_IDS, **_course_models.get("roles", {})}
    TRUSTED_ROLES = set(_course_models.get("trust_remote_code", []))"""


def course_models_source() -> str:
    """Profile-cell text (``profile_cell(extra=...)``) that applies the course's checkpoint choice (models.json)."""
    return COURSE_MODELS


BENCHMARKS_TEST = '''
# Visible test of your recorded numbers. The grader judges them against the device's physics (bandwidth, compute,
# memory) outside your notebook; this cell only checks that they are there. Its points are the benchmark checks'.
import json
from pathlib import Path

if not Path("benchmarks.json").exists():
    raise NotImplementedError("not implemented yet: implement the functions above, then run the benchmark cells")
_records = json.loads(Path("benchmarks.json").read_text())
assert isinstance(_records, list) and _records, "benchmarks.json should be a non-empty list of records"
print(f"{len(_records)} benchmark record(s) recorded; the grader checks them against the hardware's limits")
'''


def benchmarks_test_cell():
    """The locked grade cell that carries the points of the hidden benchmark checks (function "benchmarks")."""
    return visible_tests("test_benchmarks", BENCHMARKS_TEST)
