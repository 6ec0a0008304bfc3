"""`sparkgrade init COURSE_DIR`: an nbgrader course with the labs, their tiny offline models, and the release
versions nbgrader generates (solutions stripped).

    COURSE_DIR/nbgrader_config.py          the course configuration (course id, stubs)
    COURSE_DIR/models.yaml                 the spark checkpoints of every lab's roles (autograder.course.checkpoints)
    COURSE_DIR/source/<lab>/<lab>.ipynb    the instructor's copy, with solutions
    COURSE_DIR/source/<lab>/models/        the tiny models the lab names (MODELS_DIR / "<name>" in its cells)
    COURSE_DIR/release/<lab>/              what students fetch (nbgrader generate_assignment)
    COURSE_DIR/.sparkgrade/                grader-only: secret, model cache, results (never released)

Running it again refreshes the sources and is otherwise a no-op.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

from autograder.course.checkpoints import configure_labs
from autograder.db.store import CourseStore
from autograder.errors import UserError
from autograder.paths import assignments_root, ensure_python_bin_on_path
from autograder.rubric import load_rubric, rubric_dir

MODEL_REF = re.compile(r'MODELS_DIR\s*/\s*"([\w.-]+)"')


def source_labs() -> list[str]:
    return sorted(p.name for p in (assignments_root() / "source").iterdir() if (p / f"{p.name}.ipynb").is_file())


def models_used(notebook: Path) -> list[str]:
    """The model folders a lab reads, as its own cells name them: the lab says what it needs, not the engine."""
    nb = nbformat.read(notebook, as_version=4)
    return sorted(set(MODEL_REF.findall("\n".join(c.source for c in nb.cells))))


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link a folder's files (they are read-only data), copying where links cannot be made."""
    for path in src.rglob("*"):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target.unlink()
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)


def build_model_cache(course_dir: Path) -> Path:
    from reference.tiny import build_models

    # SPARKGRADE_MODEL_CACHE lets several courses (tests, demos) share one build.
    cache = Path(os.environ.get("SPARKGRADE_MODEL_CACHE", course_dir / ".sparkgrade" / "models"))
    build_models(cache)
    return cache


def generate_release(course_dir: Path, lab: str) -> Path:
    """nbgrader's own generate_assignment (solutions stripped, checksums recorded, gradebook updated)."""
    ensure_python_bin_on_path()
    cmd = [sys.executable, "-m", "nbgrader", "generate_assignment", lab, "--force", "--log-level=WARN"]
    proc = subprocess.run(cmd, cwd=course_dir, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = (proc.stderr + proc.stdout).strip().splitlines()
        why = next((ln for ln in reversed(lines) if "Error" in ln and "see the the above" not in ln),
                   lines[-1] if lines else "no output")
        raise UserError(f"nbgrader generate_assignment {lab} failed: {why.strip()[:300]}")
    return course_dir / "release" / lab


def init_course(course_dir: Path, labs: list[str] | None = None) -> list[str]:
    course_dir = Path(course_dir)
    if course_dir.exists() and not course_dir.is_dir():
        raise UserError(f"{course_dir} exists and is not a folder")
    course_dir.mkdir(parents=True, exist_ok=True)
    available = source_labs()
    labs = labs or available
    unknown = sorted(set(labs) - set(available))
    if unknown:
        raise UserError(f"unknown lab(s) {', '.join(unknown)}; the labs are: {', '.join(available)}")
    shutil.copy2(assignments_root() / "nbgrader_config.py", course_dir / "nbgrader_config.py")
    CourseStore(course_dir).secret()
    cache = build_model_cache(course_dir)
    for lab in labs:
        src = assignments_root() / "source" / lab
        dst = course_dir / "source" / lab
        dst.mkdir(parents=True, exist_ok=True)
        for path in src.iterdir():
            if path.is_dir():
                shutil.copytree(path, dst / path.name, dirs_exist_ok=True)
            else:
                shutil.copy2(path, dst / path.name)
        wanted = set(models_used(dst / f"{lab}.ipynb"))
        if (rubric_dir(lab) / "rubric.yaml").is_file():
            wanted |= set(load_rubric(lab).models)
        for name in sorted(wanted):
            if not (cache / name).exists():
                continue  # an optional model this transformers version cannot build (the lab skips it too)
            _link_tree(cache / name, dst / "models" / name)
        configure_labs(course_dir, {lab: dst / f"{lab}.ipynb"})  # the course's checkpoints, released beside it
        generate_release(course_dir, lab)
    return labs
