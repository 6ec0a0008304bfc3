"""Where the product's own data lives: the lab sources and the rubrics (trusted, never shown to students)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from autograder.errors import UserError

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _product_folder(folder: str, package: str) -> Path:
    """A top-level data folder of the product: beside the source tree in a checkout (or an editable install), else
    the copy a wheel installs as the package ``package`` (setup.py maps the folder there)."""
    beside = PROJECT_ROOT / folder
    if beside.is_dir():
        return beside
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return beside  # neither: the caller's "no rubric at ..." names the path it looked for


def rubrics_root() -> Path:
    return Path(os.environ.get("SPARKGRADE_RUBRICS") or _product_folder("rubrics", "sparkgrade_rubrics"))


def assignments_root() -> Path:
    return Path(os.environ.get("SPARKGRADE_ASSIGNMENTS") or _product_folder("assignments", "sparkgrade_assignments"))


def lab_ids() -> list[str]:
    """Every lab that has both a source notebook and a rubric: a lab is data, found on disk."""
    src = assignments_root() / "source"
    return sorted(p.name for p in rubrics_root().iterdir() if (p / "rubric.yaml").is_file() and (src / p.name).is_dir())


def check_lab(lab: str) -> str:
    known = lab_ids()
    if lab not in known:
        raise UserError(f"unknown lab {lab!r}; the labs are: {', '.join(known)}")
    return lab


def ensure_python_bin_on_path() -> None:
    """nbgrader runs its gradebook migrations with the `alembic` command: it must be found beside our Python."""
    import sys

    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
