"""`sparkgrade init COURSE_DIR`: an nbgrader course with the labs, their tiny offline models, and the release
versions nbgrader generates (solutions stripped).

    COURSE_DIR/nbgrader_config.py          the course configuration (course id, stubs)
    COURSE_DIR/models.yaml                 the spark checkpoints of every lab's roles (autograder.course.checkpoints)
    COURSE_DIR/source/<lab>/<lab>.ipynb    the instructor's copy, with solutions
    COURSE_DIR/source/<lab>/models/        the tiny models the lab names (MODELS_DIR / "<name>" in its cells)
    COURSE_DIR/release/<lab>/              what students fetch (nbgrader generate_assignment)
    COURSE_DIR/.sparkgrade/                grader-only: secret, model cache, results, backups (never released)

Running it again never overwrites what is there: the instructor may have edited a lab's notebook or the course
configuration. It adds what is missing (a lab, its models, its release). ``force`` replaces the course's copies with
the product's, after moving the old ones to .sparkgrade/backups/<time>/ (same relative paths).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import nbformat

from autograder.course.checkpoints import LAB_FILE, configure_labs
from autograder.course.config import CONFIG_NAME, CourseConfig, save_config
from autograder.db.store import CourseStore
from autograder.errors import UserError
from autograder.paths import assignments_root, ensure_python_bin_on_path
from autograder.rubric import load_rubric, rubric_dir

MODEL_REF = re.compile(r'MODELS_DIR\s*/\s*"([\w.-]+)"')
CONFIG = "nbgrader_config.py"

Say = Callable[[str], None]


@dataclass
class InitResult:
    """What `init` did: added paths are new, kept ones were left as the instructor had them, backed-up ones were
    replaced (``force``) after a copy went to ``backup``."""

    labs: list[str]
    added: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    backup: Path | None = None


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


class _Course:
    """The course folder as init sees it: each path is added when missing, kept when present, or (force) backed up
    and replaced."""

    def __init__(self, course_dir: Path, force: bool, result: InitResult) -> None:
        self.dir, self.force, self.result = course_dir, force, result
        self.stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")

    def wanted(self, rel: str) -> bool:
        """Whether to (re)write ``rel``: it is missing, or force moved it to the backup first."""
        path = self.dir / rel
        if not path.exists() and not path.is_symlink():
            self.result.added.append(rel)
            return True
        if not self.force:
            self.result.kept.append(rel)
            return False
        backup = self.dir / ".sparkgrade" / "backups" / self.stamp
        (backup / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, backup / rel)  # a move, not a copy: nothing of the old version is left mixed in
        self.result.backup = backup
        self.result.replaced.append(rel)
        return True


def init_course(course_dir: Path, labs: list[str] | None = None, *, force: bool = False,
                say: Say = lambda _: None, config: CourseConfig | None = None) -> InitResult:
    """Create (or complete) the course; ``say`` hears each step, for the progress the CLI shows. ``config`` (from
    `init --hardware`) is written to sparkgrade.yaml under the same rule: added when missing, kept when present,
    replaced after a backup with ``force``."""
    course_dir = Path(course_dir)
    if course_dir.exists() and not course_dir.is_dir():
        raise UserError(f"{course_dir} exists and is not a folder: give a new or an existing course folder")
    available = source_labs()
    labs = labs or available
    unknown = sorted(set(labs) - set(available))
    if unknown:
        raise UserError(f"unknown lab(s) {', '.join(unknown)}; the labs are: {', '.join(available)}")
    course_dir.mkdir(parents=True, exist_ok=True)
    result = InitResult(list(labs))
    course = _Course(course_dir, force, result)
    if course.wanted(CONFIG):
        shutil.copy2(assignments_root() / CONFIG, course_dir / CONFIG)
    if config is not None and course.wanted(CONFIG_NAME):
        save_config(course_dir, config)
    CourseStore(course_dir).secret()
    say("building the tiny offline models (once per machine, under a minute)")
    cache = build_model_cache(course_dir)
    for number, lab in enumerate(labs, 1):
        say(f"{number}/{len(labs)} {lab}")
        src = assignments_root() / "source" / lab
        rel = f"source/{lab}"
        if course.wanted(rel):
            shutil.copytree(src, course_dir / rel, ignore=shutil.ignore_patterns("models"))
        dst = course_dir / rel
        wanted = set(models_used(dst / f"{lab}.ipynb")) if (dst / f"{lab}.ipynb").is_file() else set()
        if (rubric_dir(lab) / "rubric.yaml").is_file():
            wanted |= set(load_rubric(lab).models)
        for name in sorted(wanted):
            if not (cache / name).exists():
                continue  # an optional model this transformers version cannot build (the lab skips it too)
            if not (dst / "models" / name).exists():  # derived data, always the product's: only filled in
                _link_tree(cache / name, dst / "models" / name)
        # The course's checkpoints (models.yaml gains only the roles it lacks), released beside the notebook: when
        # the instructor's edit of models.yaml changes the lab's models.json, the release is made again.
        choice = dst / LAB_FILE
        before = choice.read_bytes() if choice.is_file() else None
        configure_labs(course_dir, {lab: dst / f"{lab}.ipynb"})
        changed = choice.read_bytes() != before
        if force or rel in result.added or changed or not (course_dir / "release" / lab).exists():
            say(f"{number}/{len(labs)} {lab}: nbgrader generate_assignment")
            generate_release(course_dir, lab)
            result.added.append(f"release/{lab}")
    return result
