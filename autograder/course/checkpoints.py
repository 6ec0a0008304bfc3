"""Which checkpoint every role of every lab loads on the spark profile: course configuration, not code.

    COURSE_DIR/models.yaml               the course's choice, one block per lab (``sparkgrade init`` writes the labs'
                                         defaults; the instructor edits this file, never the notebooks)
    COURSE_DIR/source/<lab>/models.json  that lab's block, beside its notebook: nbgrader releases it with the
                                         notebook, and the notebook's profile cell reads it on the spark profile

A role maps to a hub id (``org/name``) or a local folder. A gated model (meta-llama/*) needs a token: the hub client
reads it from $HF_TOKEN. ``trust_remote_code`` lists the roles whose checkpoint may run the modelling code it ships
(DeepSeekMoE has no transformers class); it is empty unless the instructor writes it: running a checkpoint's code is
the instructor's decision. The defaults are the labs' own: the spark table of each notebook's profile cell.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import yaml

from autograder.errors import UserError

CONFIG_FILE = "models.yaml"
LAB_FILE = "models.json"

HEADER = """\
# The checkpoints each lab loads on its spark profile (the tiny profile always uses the course's tiny models).
# Change a role to another hub id or to a local folder, then run `sparkgrade init` again: it writes each lab's
# choice to source/<lab>/models.json, which nbgrader releases with the notebook.
# Gated models (meta-llama/*) read the Hugging Face token from $HF_TOKEN.
# trust_remote_code: roles whose checkpoint may run the Python modelling code it ships (e.g. [moe] for
# deepseek-ai/deepseek-moe-16b-base, which transformers has no class for). Leave it empty unless you trust it.
"""


@dataclass(frozen=True)
class LabModels:
    """One lab's spark checkpoints: role -> hub id or local path, and the roles allowed to run remote code."""

    roles: dict[str, str]
    trust_remote_code: frozenset[str] = field(default_factory=frozenset)

    def to_dict(self) -> dict[str, Any]:
        return {"roles": dict(self.roles), "trust_remote_code": sorted(self.trust_remote_code)}


def notebook_spark_roles(notebook: Path) -> dict[str, str]:
    """The spark table of a lab notebook's profile cell (``PROFILES = {..., "spark": dict(model_ids={...})}``)."""
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        if "profile" not in cell.metadata.get("tags", []):
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
                    and any(isinstance(t, ast.Name) and t.id == "PROFILES" for t in node.targets)):
                continue
            for key, value in zip(node.value.keys, node.value.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "spark" and isinstance(value, ast.Call):
                    ids = next((kw.value for kw in value.keywords if kw.arg == "model_ids"), None)
                    if ids is not None:
                        return dict(ast.literal_eval(ids))
    return {}


def _parse_lab(lab: str, block: object, where: Path) -> LabModels:
    if not isinstance(block, dict) or not isinstance(block.get("roles", {}), dict):
        raise UserError(f"{where}: {lab} should hold 'roles: {{role: model id}}' and 'trust_remote_code: [roles]'")
    roles = block.get("roles") or {}
    bad = [r for r, v in roles.items() if not isinstance(r, str) or not isinstance(v, str) or not v.strip()]
    if bad:
        raise UserError(f"{where}: {lab}: role(s) {', '.join(map(str, bad))} need a model id or folder (a string)")
    trusted = block.get("trust_remote_code") or []
    if isinstance(trusted, str) or not isinstance(trusted, list):
        raise UserError(f"{where}: {lab}: trust_remote_code should be a list of roles, e.g. [moe]")
    unknown = sorted(set(map(str, trusted)) - set(roles))
    if unknown:
        raise UserError(f"{where}: {lab}: trust_remote_code names unknown role(s) {', '.join(unknown)}; "
                        f"roles: {', '.join(roles)}")
    return LabModels(roles={r: v.strip() for r, v in roles.items()}, trust_remote_code=frozenset(map(str, trusted)))


def load(course_dir: Path) -> dict[str, LabModels]:
    """The course's models.yaml, validated: {lab: LabModels}. Empty if the course has none yet."""
    path = Path(course_dir) / CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} should map lab ids to their models")
    return {str(lab): _parse_lab(str(lab), block, path) for lab, block in data.items()}


def merge_defaults(current: dict[str, LabModels], defaults: dict[str, dict[str, str]]) -> dict[str, LabModels]:
    """The course's choices, with each lab's missing roles filled from its defaults (an instructor's choice wins)."""
    merged = dict(current)
    for lab, roles in defaults.items():
        mine = current.get(lab, LabModels(roles={}))
        merged[lab] = LabModels(roles={**roles, **mine.roles}, trust_remote_code=mine.trust_remote_code)
    return merged


def write_config(course_dir: Path, labs: dict[str, LabModels]) -> Path:
    path = Path(course_dir) / CONFIG_FILE
    body = yaml.safe_dump({lab: labs[lab].to_dict() for lab in sorted(labs)}, sort_keys=False, width=120)
    path.write_text(HEADER + body)
    return path


def configure_labs(course_dir: Path, notebooks: dict[str, Path]) -> dict[str, LabModels]:
    """`sparkgrade init`'s step: models.yaml gets every lab's default roles it lacks, and each lab's source folder
    gets its models.json (the block of models.yaml) to release with the notebook."""
    defaults = {lab: notebook_spark_roles(nb) for lab, nb in notebooks.items()}
    labs = merge_defaults(load(course_dir), defaults)
    write_config(course_dir, labs)
    for lab, notebook in notebooks.items():
        (notebook.parent / LAB_FILE).write_text(json.dumps(labs[lab].to_dict(), indent=1) + "\n")
    return labs


def spark_checkpoints(course_dir: Path) -> dict[str, dict[str, str]]:
    """{lab: {role: model id or folder}}: every checkpoint the course's spark profiles load (for `models pull`)."""
    return {lab: dict(models.roles) for lab, models in load(course_dir).items()}


def remote_code_checkpoints(course_dir: Path) -> set[str]:
    """The model ids whose shipped modelling code the course trusts (`models pull` fetches their *.py files)."""
    return {models.roles[role] for models in load(course_dir).values() for role in models.trust_remote_code}
