"""`sparkgrade models pull`: the spark profile's checkpoints, downloaded once into the mirror the labs read.

The labs resolve a hub id ``org/name`` to ``$SPARKGRADE_HUB_ROOT/org/name`` (assignments/labkit.py,
resolve_model_id), so a Spark with a filled mirror runs the spark profile offline, and so does `make gpu-check`'s
benchmark. Which checkpoints: each lab's spark model ids, as a mapping ``{lab: {role: model_id}}``: a course's
choice (``checkpoints.spark_checkpoints(course_dir)``, from its models.yaml), or without a course the labs' defaults
(``spark_checkpoints_from_sources``, each lab's profile cell). A role set to a local folder is already there and is
skipped. Weights, config and tokenizer only, no code, except for the checkpoints the course lets run the modelling
code they ship (its ``trust_remote_code`` roles, e.g. DeepSeekMoE): their ``*.py`` files come too.

Resume: huggingface_hub's snapshot_download resumes partly downloaded files and skips complete ones; a checkpoint
counts as pulled only once a marker is written after a download returned, so an interrupted pull is simply run
again. Sizes: the download plan (a dry run) is shown before, the folder's size after.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autograder.course.checkpoints import notebook_spark_roles
from autograder.errors import UserError

MARKER = ".sparkgrade-pulled.json"
# Weights in safetensors only (checkpoints that ship both would double the download), plus config and tokenizer.
ALLOW = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "tokenizer*"]  # no code: nothing runs
CODE = ["*.py"]  # the modelling code of a checkpoint the course trusts (trust_remote_code)

Downloader = Callable[..., Any]  # huggingface_hub.snapshot_download's signature (repo_id, local_dir=, ...)


@dataclass(frozen=True)
class Pulled:
    model_id: str
    path: Path
    size_bytes: int
    status: str  # "downloaded" | "present"
    labs: tuple[str, ...]


def default_hub_root() -> Path:
    import os

    return Path(os.environ.get("SPARKGRADE_HUB_ROOT") or Path.home() / ".cache" / "sparkgrade" / "hub")


def spark_checkpoints_from_sources(source_dir: Path) -> dict[str, dict[str, str]]:
    """{lab: {role: model_id}} read from the profile cell of each lab notebook under ``source_dir``."""
    out = {}
    for path in sorted(source_dir.glob("*/*.ipynb")):
        if path.stem != path.parent.name:
            continue
        ids = notebook_spark_roles(path)
        if ids:
            out[path.stem] = ids
    return out


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and ".cache" not in p.parts)


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def is_local(model_id: str) -> bool:
    """A role set to a folder on this machine (absolute, ./, ~/ or an existing folder) rather than a hub id."""
    return model_id.startswith(("/", ".", "~")) or Path(model_id).expanduser().is_dir()


def planned_bytes(downloader: Downloader, model_id: str, local_dir: Path, allow: list[str] = ALLOW) -> int | None:
    """What the download will fetch, from a dry run; None where the downloader cannot say."""
    try:
        plan = downloader(repo_id=model_id, local_dir=str(local_dir), allow_patterns=allow, dry_run=True)
    except TypeError:
        return None  # a downloader without dry runs
    if not isinstance(plan, list):
        return None
    return sum((f.file_size or 0) for f in plan if getattr(f, "will_download", True))


def pull(checkpoints: Mapping[str, Mapping[str, str]], root: Path, *, labs: list[str] | None = None,
         with_code: Collection[str] = (), downloader: Downloader | None = None,
         say: Callable[[str], None] = lambda _: None) -> list[Pulled]:
    """Download every spark checkpoint the chosen labs name (each once, however many labs share it); the model ids in
    ``with_code`` bring their modelling code (``*.py``) too. Local folders are skipped."""
    if downloader is None:
        from huggingface_hub import snapshot_download

        downloader = snapshot_download
    unknown = sorted(set(labs or []) - set(checkpoints))
    if unknown:
        raise UserError(f"no spark checkpoints for {', '.join(unknown)}; labs with some: {', '.join(checkpoints)}")
    wanted: dict[str, list[str]] = {}
    for lab in labs or list(checkpoints):
        for model_id in checkpoints[lab].values():
            if is_local(model_id):
                say(f"{model_id}: a local folder ({lab}), nothing to pull")
                continue
            if "/" not in model_id:
                raise UserError(f"{lab}: {model_id!r} is not a hub id (org/name)")
            wanted.setdefault(model_id, []).append(lab)
    results = []
    for model_id, used_by in wanted.items():
        local = root / model_id
        if (local / MARKER).is_file():
            size = folder_bytes(local)
            say(f"{model_id}: present ({human(size)}) in {local}")
            results.append(Pulled(model_id, local, size, "present", tuple(used_by)))
            continue
        local.mkdir(parents=True, exist_ok=True)
        allow = ALLOW + CODE if model_id in with_code else ALLOW
        plan = planned_bytes(downloader, model_id, local, allow)
        say(f"{model_id}: downloading {human(plan) if plan is not None else 'size unknown'} to {local} "
            f"(for {', '.join(used_by)}); an interrupted pull resumes when run again")
        downloader(repo_id=model_id, local_dir=str(local), allow_patterns=allow)
        size = folder_bytes(local)
        (local / MARKER).write_text(json.dumps({"model_id": model_id, "bytes": size}))
        say(f"{model_id}: done, {human(size)}")
        results.append(Pulled(model_id, local, size, "downloaded", tuple(used_by)))
    return results
