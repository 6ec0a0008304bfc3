"""A lab's rubric: points per hidden check, tolerances, sandbox limits and the rubric's version, as data.

rubrics/<lab>/rubric.yaml is trusted input written by the course team; pydantic still validates it so a typo in
a rubric fails with a one-line message rather than a wrong grade.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from autograder.errors import UserError
from autograder.paths import rubrics_root
from autograder.sandbox.limits import Limits

# docs/facts.md, "Selective scan": the tolerances mamba-ssm's own tests use against its reference (rtol, atol).
DEFAULT_TOLERANCES = {
    "float64": (1e-7, 1e-9),
    "float32": (6e-4, 2e-3),
    "float16": (3e-3, 5e-3),
    "bfloat16": (3e-2, 5e-2),
}


class CheckSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    function: str  # the student function the check exercises ("benchmarks" for recorded numbers)
    points: float = Field(ge=0)
    title: str = ""  # one learner-facing line: what the check is about
    # For a check of the recorded numbers (function "benchmarks"): the plausibility rules it judges. Such a check has
    # no code in the lab's folder: autograder/checks/benchmark_rules.py serves every one (docs/contracts.md).
    rules: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _rules_judge_benchmarks(self) -> CheckSpec:
        if self.rules and self.function != "benchmarks":
            raise ValueError(f"only checks of function 'benchmarks' judge rules, not {self.function!r}")
        return self


class ForbidSpec(BaseModel):
    """Callables a student function must not use (the lab exists so that students write them). They are traced
    inside the sandbox while the function runs (sandbox/inside/harness.py). ``zero``: the function's checks score
    nothing; ``flag``: the points stand and a person looks. Either way the record carries a forbidden-call flag."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    calls: list[str] = Field(min_length=1)  # dotted paths: "transformers.models.mixtral.modeling_mixtral.load_..."
    policy: Literal["zero", "flag"] = "zero"


class Rubric(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    lab: str
    version: str
    limits: dict[str, float] = Field(default_factory=dict)  # overrides of autograder.sandbox.Limits fields
    gpu: bool = False  # whether the checks want the GPU on a GPU box
    hardware: str = "cpu"  # default hardware profile for benchmark plausibility
    # "all": run the whole notebook (as nbgrader does). "definitions": run the setup cells named below, the
    # parameters cell, the solution cells and the student's definition-only cells (autograder/execution.py).
    execute: Literal["all", "definitions"] = "all"
    setup_cells: list[str] = Field(default_factory=list)
    models: list[str] = Field(default_factory=list)  # tiny models the checks use beyond those the notebook names
    tolerances: dict[str, tuple[float, float]] = Field(default_factory=lambda: dict(DEFAULT_TOLERANCES))
    checks: dict[str, CheckSpec]
    # Checks that run only in a GPU course (course gpu: true and this rubric's gpu: true): the student's functions
    # on CUDA tensors against the GPU reference kernels. Their code lives in rubrics/<lab>/test_gpu_*.py, which a
    # CPU course never collects.
    gpu_checks: dict[str, CheckSpec] = Field(default_factory=dict)
    on_gpu: bool = False  # set by on_gpu_course(), never in the YAML: this copy grades on the GPU

    @model_validator(mode="after")
    def _gpu_checks_apart(self) -> Rubric:
        both = sorted(set(self.checks) & set(self.gpu_checks))
        if both:
            raise ValueError(f"check ids in both checks and gpu_checks: {', '.join(both)}")
        if self.gpu_checks and not self.gpu:
            raise ValueError("gpu_checks need gpu: true")
        return self

    def on_gpu_course(self) -> Rubric:
        """This rubric as a GPU course grades with it: its GPU checks join the others (and the maximum score)."""
        if self.on_gpu:
            return self
        # "+gpu" in the version: a GPU course's records are another rubric's, so switching a course to the GPU
        # regrades it, while the CPU course's version (and its stored grades) stay as they are.
        return self.model_copy(update={"checks": {**self.checks, **self.gpu_checks}, "gpu_checks": {}, "on_gpu": True,
                                       "version": f"{self.version}+gpu"})
    forbid: dict[str, ForbidSpec] = Field(default_factory=dict)  # student function -> what it must not call

    @property
    def benchmark_rules(self) -> dict[str, frozenset[str]]:
        """check id -> the plausibility rules it judges, for the benchmark checks that declare rules."""
        return {cid: frozenset(c.rules) for cid, c in self.checks.items() if c.rules}

    @property
    def max_score(self) -> float:
        return float(sum(c.points for c in self.checks.values()))

    @cached_property
    def sandbox_limits(self) -> Limits:
        ints = {"memory_bytes", "max_processes", "file_bytes", "cell_output_bytes", "call_output_bytes",
                "call_text_bytes", "tmp_bytes", "threads", "gpu_memory_bytes", "host_reserve_bytes"}
        try:
            values: dict[str, Any] = {k: int(v) if k in ints else float(v) for k, v in self.limits.items()}
            return Limits(**values)
        except TypeError as exc:
            raise UserError(f"rubric {self.lab}: unknown limit in 'limits' ({exc})") from None

    def tolerance(self, dtype: str) -> tuple[float, float]:
        rtol, atol = self.tolerances.get(dtype, DEFAULT_TOLERANCES.get(dtype, DEFAULT_TOLERANCES["float32"]))
        return rtol, atol


def rubric_dir(lab: str) -> Path:
    return rubrics_root() / lab


def load_rubric(lab: str) -> Rubric:
    path = rubric_dir(lab) / "rubric.yaml"
    if not path.is_file():
        raise UserError(f"no rubric for {lab!r} at {path}")
    try:
        data = yaml.safe_load(path.read_text())
        rubric = Rubric.model_validate(data)
    except (yaml.YAMLError, ValidationError) as exc:
        first = str(exc).splitlines()
        raise UserError(f"rubric {path} is invalid: {' '.join(first[:3])}") from None
    if rubric.lab != lab:
        raise UserError(f"rubric {path} says lab {rubric.lab!r}, expected {lab!r}")
    return rubric
