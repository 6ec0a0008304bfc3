"""The rubrics' GPU checks (gpu_checks, rubrics/<lab>/test_gpu_*.py): listed and collected only for a GPU course,
errors (never passes, never skips) on a grader without CUDA or without mamba-ssm, and on a CUDA box: the course's
answer and a differently written correct one pass, a mutant fails."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import nbformat
import pytest
import torch
import yaml
from pydantic import ValidationError

from autograder.checks.plugin import SubmissionContext
from autograder.checks.runner import check_files, run_checks
from autograder.course.config import CourseConfig, course_rubric
from autograder.paths import assignments_root, lab_ids
from autograder.rubric import Rubric, load_rubric, rubric_dir
from autograder.sandbox import CallResult
from reference.scan import mamba_ssm_available

# The labs with GPU checks, from the rubrics on disk (rubric.yaml `gpu: true`): a new GPU lab is tested unchanged.
GPU_LABS = [lab for lab in lab_ids() if load_rubric(lab).gpu]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on the GPU box)")


def defined_checks(paths) -> set[str]:
    out = set()
    for path in paths:
        tree = ast.parse(Path(path).read_text())
        out |= {n.name.removeprefix("test_") for n in tree.body if isinstance(n, ast.FunctionDef)
                and n.name.startswith("test_")}
    return out


@pytest.mark.parametrize("lab", GPU_LABS)
def test_gpu_check_files_define_exactly_the_rubrics_gpu_checks_and_a_cpu_course_never_collects_them(lab):
    rubric = load_rubric(lab)
    assert rubric.gpu and rubric.gpu_checks
    gpu_files = sorted(rubric_dir(lab).glob("test_gpu_*.py"))
    assert defined_checks(gpu_files) == set(rubric.gpu_checks)
    assert not set(gpu_files) & set(check_files(lab))
    assert set(gpu_files) <= set(check_files(lab, on_gpu=True))


@pytest.mark.parametrize("lab", GPU_LABS)
def test_only_a_gpu_course_grades_with_the_gpu_checks_under_its_own_version(lab):
    cpu = course_rubric(lab, CourseConfig())
    assert cpu == load_rubric(lab) and not cpu.on_gpu  # the CPU course is exactly as before
    gpu = course_rubric(lab, CourseConfig(hardware="dgx-spark", gpu=True))
    assert gpu.on_gpu and set(gpu.checks) == set(cpu.checks) | set(cpu.gpu_checks)
    assert gpu.max_score == cpu.max_score + sum(c.points for c in cpu.gpu_checks.values())
    assert gpu.version == cpu.version + "+gpu"  # switching a course to the GPU regrades it
    assert course_rubric("lab-2.4.3-moe-exploration", CourseConfig(gpu=True)).on_gpu is False  # a CPU lab stays


def test_a_rubric_with_gpu_checks_must_say_gpu_and_keep_their_ids_apart():
    base = yaml.safe_load((rubric_dir("lab-2.4.4-moe-router") / "rubric.yaml").read_text())
    with pytest.raises(ValidationError, match="gpu_checks need gpu: true"):
        Rubric.model_validate({**base, "gpu": False})
    twice = {**base, "gpu_checks": {**base["gpu_checks"], "zloss_value": base["checks"]["zloss_value"]}}
    with pytest.raises(ValidationError, match="in both checks and gpu_checks: zloss_value"):
        Rubric.model_validate(twice)


class DeviceCaller:
    """The student's functions in this process, called as the sandbox calls them: tensors copied to the device the
    check asks for, results copied back to the CPU (what crosses the sandbox boundary)."""

    def __init__(self, namespace: dict) -> None:
        self.namespace = namespace
        self.devices: list[str | None] = []

    def call(self, function, args=(), kwargs=None, *, timeout_s=None, device=None):
        self.devices.append(device)
        move = lambda v, d: v.detach().clone().to(d) if isinstance(v, torch.Tensor) else (  # noqa: E731
            type(v)(move(x, d) for x in v) if isinstance(v, list | tuple) else v)
        try:
            value = self.namespace[function](*move(tuple(args), device or "cpu"),
                                             **{k: move(v, device or "cpu") for k, v in (kwargs or {}).items()})
        except Exception as exc:
            return CallResult("error", error=f"{type(exc).__name__}: {exc}", sandboxed=False)
        return CallResult("ok", value=move(value, "cpu"), sandboxed=False)


def solution(lab: str) -> dict:
    nb = nbformat.read(assignments_root() / "source" / lab / f"{lab}.ipynb", as_version=4)
    ns: dict = {"torch": torch, "F": torch.nn.functional, "math": math, "nn": torch.nn}
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution"):
            exec(compile(cell.source, lab, "exec"), ns)
    return ns


def gpu_results(lab: str, namespace: dict, device: str):
    rubric = course_rubric(lab, CourseConfig(hardware="dgx-spark", gpu=True))
    caller = DeviceCaller(namespace)
    results, errors = run_checks(rubric, caller, "gpu-seed", SubmissionContext("t", lab, {}, "dgx-spark", device),
                                 select=list(load_rubric(lab).gpu_checks))
    return {r.id: r for r in results}, errors, caller


@pytest.mark.skipif(torch.cuda.is_available(), reason="shows what a grader without CUDA does (this box has CUDA)")
@pytest.mark.parametrize("lab", GPU_LABS)
def test_without_cuda_the_gpu_checks_are_the_graders_errors_not_passes_or_skips(lab):
    results, errors, caller = gpu_results(lab, solution(lab), "cpu")
    assert results and all(r.status == "error" and r.points == 0 for r in results.values()), results
    assert all("without CUDA" in r.message for r in results.values())
    assert len(errors) == len(results)  # each is on the record as a grader error, for an instructor to see
    assert caller.devices == []  # the grader's failure was found before the student's code was called


# -- on a CUDA box ----------------------------------------------------------------------------------------------

@needs_cuda
def test_on_a_cuda_box_mamba_ssm_imports_a_missing_kernel_is_an_error_not_a_skip():
    assert mamba_ssm_available(), "CUDA is here but mamba-ssm does not import: run `make gpu` (the error it prints)"


@needs_cuda
@pytest.mark.parametrize("lab", GPU_LABS)
def test_the_course_answer_on_cuda_passes_every_gpu_check(lab):
    results, errors, caller = gpu_results(lab, solution(lab), "cuda")
    assert not errors, errors
    assert all(r.status == "passed" for r in results.values()), {k: r.message for k, r in results.items()}
    assert set(caller.devices) == {"cuda"}


@needs_cuda
def test_a_differently_written_correct_scan_passes_and_a_mutant_fails_on_cuda():
    from reference import selective_scan, selective_state_update

    lab = "lab-2.4.2-mamba-architecture"
    other = {"selective_scan": lambda *a, **k: selective_scan(*a, **k, backend="chunked"),
             "selective_state_update": selective_state_update}
    results, errors, _ = gpu_results(lab, other, "cuda")
    assert not errors and all(r.status == "passed" for r in results.values()), results

    def no_softplus(*a, delta_softplus=False, **k):  # the classic slip: the softplus on delta forgotten
        return selective_scan(*a, delta_softplus=False, **k, backend="sequential")

    results, _, _ = gpu_results(lab, {**other, "selective_scan": no_softplus}, "cuda")
    failed = {k for k, r in results.items() if r.status == "failed"}
    assert {"gpu_scan_fp32_matches_kernel", "gpu_scan_bf16_matches_kernel"} <= failed
    assert results["gpu_state_update_matches_kernel"].status == "passed"  # a mistake costs only its function


@needs_cuda
def test_a_router_that_never_renormalises_fails_the_gpu_router_check_and_only_it():
    lab = "lab-2.4.4-moe-router"
    ns = solution(lab)

    def unnormalised(logits, k, normalize=True):  # Qwen2-MoE's default applied to Mixtral's normalize=True
        w, e = torch.softmax(logits.float(), -1).topk(k, -1)
        return w.to(logits.dtype), e

    results, _, _ = gpu_results(lab, {**ns, "top_k_routing": unnormalised}, "cuda")
    assert results["gpu_routing_matches_reference"].status == "failed", results["gpu_routing_matches_reference"]
    assert results["gpu_lbl_matches_reference"].status == "passed"
