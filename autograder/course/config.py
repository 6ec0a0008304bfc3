"""A course's own settings: the hardware its students measure on and whether its GPU labs run on the GPU.

    COURSE_DIR/sparkgrade.yaml      written by `sparkgrade init --hardware NAME`, editable by hand

    hardware: dgx-spark     # the profile benchmark numbers are judged against (reference.hardware)
    gpu: true               # labs whose rubric says `gpu: true` run their sandbox on a GPU, with their gpu_checks
    gpu_sandboxes: 1        # at most this many GPU sandboxes at once on one machine (unified memory is shared)
    policies:               # per lab, for `sparkgrade watch` (autograder/watch.py): graded attempts, which counts,
      lab-2.4.4-moe-router: # what the page shows before the due date
        {attempts: 3, counts: best, before_due: checks}

The file is the instructor's, so trusted; pydantic still validates it so a typo fails with one line. A course
without the file is the CPU course every release before this one made: the rubrics' hardware, no GPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from autograder.errors import UserError

if TYPE_CHECKING:
    from autograder.rubric import Rubric

CONFIG_NAME = "sparkgrade.yaml"


class AttemptPolicy(BaseModel):
    """How `sparkgrade watch` treats one lab's submissions (autograder/watch.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    attempts: int | None = Field(default=None, ge=1)  # graded attempts per student; None: no cap
    counts: Literal["last", "best"] = "last"  # the graded attempt nbgrader's gradebook gets
    before_due: Literal["full", "checks"] = "full"  # checks: the page shows which checks passed, not why


class CourseConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    hardware: str | None = None  # None: each lab's rubric default
    gpu: bool = False
    gpu_sandboxes: int = Field(default=1, ge=1)
    policies: dict[str, AttemptPolicy] = Field(default_factory=dict)  # lab -> attempt policy

    @field_validator("hardware")
    @classmethod
    def _known(cls, v: str | None) -> str | None:
        from reference.hardware import get_profile

        return None if v is None else get_profile(v).name  # a ValueError names the valid profiles


def for_hardware(hardware: str) -> CourseConfig:
    """What `init --hardware NAME` writes: any hardware but the CPU ceiling is a GPU course. A ValueError (one line,
    naming the valid profiles) for an unknown name."""
    from reference.hardware import get_profile

    name = get_profile(hardware).name
    return CourseConfig(hardware=name, gpu=name != "cpu")


def config_path(course_dir: Path) -> Path:
    return Path(course_dir) / CONFIG_NAME


def effective_hardware(override: str | None, config: CourseConfig, rubric_default: str) -> str:
    """`grade --hardware` wins, then the course's declaration, then the lab's rubric."""
    from reference.hardware import get_profile

    if override is not None:
        try:
            return get_profile(override).name
        except ValueError as exc:
            raise UserError(str(exc)) from None
    return config.hardware or rubric_default


def load_config(course_dir: Path | None) -> CourseConfig:
    if course_dir is None or not config_path(course_dir).is_file():
        return CourseConfig()
    path = config_path(course_dir)
    try:
        return CourseConfig.model_validate(yaml.safe_load(path.read_text()) or {})
    except (yaml.YAMLError, ValidationError) as exc:
        raise UserError(f"{path} is invalid: {' '.join(str(exc).splitlines()[:3])}") from None


def course_rubric(lab: str, config: CourseConfig) -> Rubric:
    """The rubric this course grades ``lab`` with: with its GPU checks where both the lab and the course are GPU."""
    from autograder.rubric import load_rubric

    rubric = load_rubric(lab)
    return rubric.on_gpu_course() if rubric.gpu and config.gpu else rubric


def save_config(course_dir: Path, config: CourseConfig) -> Path:
    path = config_path(course_dir)
    header = ("# sparkgrade course settings (autograder/course/config.py). hardware: the profile benchmark numbers are "
              "judged against;\n# gpu: GPU labs run on the GPU; gpu_sandboxes: GPU sandboxes at once per machine.\n")
    data = config.model_dump(exclude={"policies"} if not config.policies else None)
    path.write_text(header + yaml.safe_dump(data, sort_keys=False))
    return path
