"""Every lab's hidden checks, proven on known answers without the sandbox (fast; the sandboxed path is proven in
test_engine.py and test_grading_labs.py):

- the source notebook's own solutions earn full marks;
- a second, independent correct implementation (the trusted reference) earns full marks too;
- every misconception in the lab's catalogue fails its function's checks, only those, and is named;
- each rubric lists exactly the checks its test files define;
- benchmark-file checks pass an honest benchmarks.json and take points for a fabricated one.

Model(name) arguments resolve to the lab's tiny models, built once with reference.tiny.build_models into a cache
folder ($SPARKGRADE_TEST_MODELS, default <tmp>/sparkgrade-test-models; rebuilt only when the recipe changes), which
is also the trusted side's $SPARKGRADE_MODELS_TRUSTED.
"""

from __future__ import annotations

import ast
import copy
import importlib.util
import json
import math
import os
import time
from functools import cache
from pathlib import Path

import nbformat
import pytest
import torch
import transformers
from generation_clocks import logits_processor_generation

import reference
from autograder.checks.api import PROBE
from autograder.checks.plugin import GRAD_OUTPUT, GRAD_WRT, RETURN_ARGS, SubmissionContext
from autograder.checks.runner import check_files, load_misconceptions, run_checks
from autograder.paths import assignments_root, rubrics_root
from autograder.rubric import load_rubric
from autograder.sandbox import CallResult, Model
from autograder.sandbox.inside import harness

FUNCTION_LABS = sorted(p.parent.name for p in rubrics_root().glob("*/misconceptions.py"))
MODELS_ENV = "SPARKGRADE_MODELS_TRUSTED"
SLOW_FUNCTIONS = frozenset({"benchmark_generation"})


@pytest.fixture(scope="session")
def models_dir(tiny_models_dir) -> Path:
    return tiny_models_dir


@pytest.fixture(autouse=True)
def trusted_models_env(request, monkeypatch):
    """Labs whose checks load models get the built folder, as the grader must provide it."""
    if "lab" in request.fixturenames:
        monkeypatch.setenv(MODELS_ENV, str(request.getfixturevalue("models_dir")))


@cache
def load_model(root: str, name: str, dtype: str | None):
    from transformers import AutoModelForCausalLM

    kw = {"dtype": getattr(torch, dtype)} if dtype else {}
    return AutoModelForCausalLM.from_pretrained(Path(root) / name, local_files_only=True, **kw).eval()


class LocalCaller:
    """Calls plain Python functions in this process, copying tensors in and out as the sandbox would, and loading
    Model(name) arguments from the models folder as the kernel does (cached, like the kernel's cache)."""

    def __init__(self, namespace: dict) -> None:
        self.namespace = namespace

    def call(self, function, args=(), kwargs=None, *, timeout_s=None, device=None, forbid=()):
        # forbid (rubric `forbid:`) is traced inside the sandbox only: in-process calls report nothing.
        fn = self.namespace.get(function)
        if fn is None and PROBE not in (kwargs or {}):
            return CallResult("error", error=f"NameError: {function!r} is not defined", sandboxed=False)
        args, kwargs = list(_resolve(_copy(tuple(args)))), _resolve(_copy(dict(kwargs or {})))
        wrt, grad_output = kwargs.pop(GRAD_WRT, None), kwargs.pop(GRAD_OUTPUT, None)
        probe = kwargs.pop(PROBE, None)
        start = time.perf_counter()
        returned = kwargs.pop(RETURN_ARGS, None)
        try:
            if probe == "reference_generation":  # the harness's trusted timing, as the kernel runs it
                value = harness._sparkgrade_reference_generation(*args, **kwargs)
            elif probe == "forwards":
                value = harness._sparkgrade_count_forwards(fn, args, kwargs)
            elif wrt is None:
                value = fn(*args, **kwargs)
                value = value if returned is None else (value, [args[i] for i in returned])
            else:  # a gradient call, as sandbox/inside/harness.py answers it
                for i in wrt:
                    args[i] = args[i].requires_grad_(True)
                out = fn(*args, **kwargs)
                out = out[0] if isinstance(out, tuple | list) else out
                value = torch.autograd.grad(out, [args[i] for i in wrt], grad_output, allow_unused=True)
        except Exception as exc:
            return CallResult("error", error=f"{type(exc).__name__}: {exc}", sandboxed=False)
        return CallResult("ok", value=_copy(value), round_trip_s=time.perf_counter() - start, sandboxed=False)


def _copy(v):
    if isinstance(v, torch.Tensor):
        return v.detach().clone()
    if isinstance(v, list | tuple):
        return type(v)(_copy(x) for x in v)
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    return v


def _resolve(v):
    if isinstance(v, Model):
        if v.config is None and not v.lora and v.freeze is None:
            return load_model(os.environ[MODELS_ENV], v.name, v.dtype)
        from autograder.checks.trusted import build_model

        # A fresh copy, as each sandbox builds its own: a student's function may change requires_grad.
        return copy.deepcopy(build_model(os.environ[MODELS_ENV], v))
    if isinstance(v, list | tuple):
        return type(v)(_resolve(x) for x in v)
    if isinstance(v, dict):
        return {k: _resolve(x) for k, x in v.items()}
    return v


def solution_namespace(lab: str) -> dict:
    """The source notebook's solution cells, executed with the imports the lab's setup provides."""
    nb = nbformat.read(assignments_root() / "source" / lab / f"{lab}.ipynb", as_version=4)
    ns: dict = {"torch": torch, "F": torch.nn.functional, "math": math, "nn": torch.nn, "time": time,
                "AutoConfig": transformers.AutoConfig,
                **{k: v for k, v in vars(labkit()).items() if not k.startswith("__")}}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("solution"):
            exec(compile(cell.source, f"<{lab}:{meta['grade_id']}>", "exec"), ns)
    return ns


@cache
def labkit():
    """assignments/labkit.py: the helpers every lab's setup cell inlines (PeakMemory, record_benchmark ...)."""
    spec = importlib.util.spec_from_file_location("sparkgrade_labkit", assignments_root() / "labkit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def grade_locally(lab: str, namespace: dict, seed: str = "test-seed", files: dict | None = None,
                  skip_functions: frozenset = frozenset(), select_check: str | None = None):
    rubric = load_rubric(lab)
    if files is None:
        files = HONEST_FILES.get(lab, {})
    select = [cid for cid, c in rubric.checks.items() if c.function not in skip_functions] if skip_functions else None
    select = [select_check] if select_check else select
    results, errors = run_checks(rubric, LocalCaller(namespace), seed, SubmissionContext("t", lab, files), select)
    assert not errors, errors
    return rubric, {r.id: r for r in results}


@pytest.mark.parametrize("lab", FUNCTION_LABS)
def test_source_solution_earns_full_marks(lab):
    rubric, results = grade_locally(lab, solution_namespace(lab))
    failed = {k: (r.message, r.diagnosis) for k, r in results.items() if r.status != "passed"}
    assert not failed
    assert sum(r.points for r in results.values()) == rubric.max_score


@pytest.mark.parametrize("lab", FUNCTION_LABS)
def test_reference_as_a_second_implementation_earns_full_marks(lab):
    ns = solution_namespace(lab)
    replaced = {name: getattr(reference, name) for name in list(ns) if callable(ns[name]) and hasattr(reference, name)}
    replaced.update({name: fn for name, fn in SECOND_IMPLEMENTATIONS.items() if name in ns})
    assert replaced, f"{lab}: no function of the reference package to swap in"
    ns.update(replaced)
    _, results = grade_locally(lab, ns)
    assert all(r.status == "passed" for r in results.values()), {k: r.message for k, r in results.items()
                                                                  if r.status != "passed"}


def _config_object(config):
    """The grader sends configs as dicts; the reference reads a config object (or the dict itself, for a model_type
    without a transformers class such as DeepSeekMoE's "deepseek")."""
    if not isinstance(config, dict) or config["model_type"] not in transformers.models.auto.CONFIG_MAPPING:
        return config
    return transformers.AutoConfig.for_model(config["model_type"],
                                             **{k: v for k, v in config.items() if k != "model_type"})


def _count_by_storage(model):
    """Parameters deduplicated by storage (not by Parameter object), counted with torch's own numel."""
    unique = {p.data_ptr(): p for _, p in model.named_parameters(remove_duplicate=False)}
    return (sum(p.numel() for p in unique.values() if p.requires_grad), sum(p.numel() for p in unique.values()))


def _lora_targets_by_class(model):
    """The lab's answer found from module paths: Linear modules named in_proj / x_proj whose parent is a mixer."""
    found: list[str] = []
    for path, module in model.named_modules():
        parent, _, last = path.rpartition(".")
        if (isinstance(module, torch.nn.Linear) and last in ("in_proj", "x_proj") and last not in found
                and "Mixer" in type(model.get_submodule(parent)).__name__):
            found.append(last)
    return found


# Independent implementations where the reference package has no function of that name (or another signature).
SECOND_IMPLEMENTATIONS = {
    "moe_param_counts": lambda config: reference.moe_param_counts(_config_object(config)),
    "count_trainable_parameters": _count_by_storage,
    "mamba_lora_targets": _lora_targets_by_class,
}


def _misconception_cases():
    for lab in FUNCTION_LABS:
        for m in load_misconceptions(lab):
            yield pytest.param(lab, m, id=f"{lab}:{m.function}:{m.name}")


@pytest.mark.parametrize(("lab", "misconception"), list(_misconception_cases()))
def test_each_misconception_is_caught_and_named(lab, misconception):
    ns = solution_namespace(lab)
    ns[misconception.function] = misconception.mutant
    # Checks that time real generation take seconds each: they run in the full-marks tests, not once per mistake.
    skip = SLOW_FUNCTIONS - {misconception.function}
    _, results = grade_locally(lab, ns, seed=f"seed-{misconception.name}", skip_functions=skip)
    failed = [r for r in results.values() if r.status != "passed"]
    assert failed, "the checks did not catch this mistake"
    assert {r.function for r in failed} == {misconception.function}, "a mistake in one function cost others"
    assert any(misconception.name in r.diagnosis for r in failed), [r.diagnosis for r in failed]


@pytest.mark.parametrize("lab", sorted(p.parent.name for p in rubrics_root().glob("*/rubric.yaml")))
def test_rubric_lists_exactly_the_checks_its_tests_define(lab):
    defined = set()
    for path in check_files(lab):
        tree = ast.parse(Path(path).read_text())
        defined |= {n.name.removeprefix("test_") for n in tree.body
                    if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}
    rubric = load_rubric(lab)
    declared = set(rubric.benchmark_rules)  # served by autograder/checks/benchmark_rules.py, not the lab's files
    assert not defined & declared, "a check both declared by its rules and written in the lab's files"
    assert defined | declared == set(rubric.checks)


# ---------------------------------------------------------------------------------------------------------------
# benchmarks.json: honest files measured on the tiny models with the labs' own helpers, and fabricated ones

# One honest benchmarks.json serves every lab that judges benchmarks (found on disk: a rubric check of function
# "benchmarks"): each tiny model at two context lengths with every field a lab records (perplexity, the KV cache or
# SSM state), plus a LoRA fine-tune record. A new lab's benchmark checks are tested against it unchanged.
BENCHMARK_LABS = sorted(lab for lab in FUNCTION_LABS
                        if any(c.function == "benchmarks" for c in load_rubric(lab).checks.values()))
HONEST_FILES: dict[str, dict[str, bytes]] = {}


def _measure(models_dir: Path, names, contexts, path: Path, **extra_fields) -> None:
    """Records as the labs write them: labkit.measure_generation + record_benchmark, plus lab-specific fields."""
    kit = labkit()
    for name in names:
        model = load_model(str(models_dir), name, None)
        total, active = kit.count_params(model)
        for context in contexts:
            ids = torch.randint(3, model.config.vocab_size, (1, context), generator=torch.Generator().manual_seed(0))
            runs = [kit.measure_generation(model, ids, 6) for _ in range(2)]
            fields = {k: (v(model, context) if callable(v) else v) for k, v in extra_fields.items()}
            kit.record_benchmark(
                path, model=f"tiny-{name}", architecture=kit.architecture_of(model.config), params_total=total,
                params_active=active, dtype="float32", batch_size=1, context_len=context, new_tokens=6,
                ttft_s=min(r["ttft_s"] for r in runs), decode_tok_s=max(r["decode_tok_s"] for r in runs),
                peak_mem_bytes=max(r["peak_mem_bytes"] for r in runs), device="cpu",
                repeats=[r["decode_tok_s"] for r in runs], config=model.config, **fields)


@pytest.fixture(scope="session", autouse=True)
def honest_benchmark_files(models_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("benchmarks")
    os.environ.setdefault(MODELS_ENV, str(models_dir))
    honest = out / "benchmarks.json"
    text = (models_dir / "data" / "corpus" / "prose_valid.txt").read_text()
    ids = transformers.AutoTokenizer.from_pretrained(models_dir / "llama").encode(text, return_tensors="pt")[:, :200]
    fields = dict(perplexity=lambda m, c: reference.perplexity(m, ids, 64, 32), bits_per_byte=lambda m, c: 1.0,
                  kv_or_state_bytes=lambda m, c: reference.kv_cache_bytes(m.config, c + 6, 1, 4)
                  + reference.mamba_state_bytes(m.config, 1, 4))
    names = [n for n in ("llama", "mamba", "qwen2-moe", "jamba") if (models_dir / n).is_dir()]
    _measure(models_dir, names, (16, 32), honest, **fields)
    _measure(models_dir, ("mamba",), (12,), honest, notes="LoRA fine-tune", **fields,
             finetune=lambda m, c: dict(targets=["in_proj", "x_proj"], rank=8, alpha=16, steps=25, batch_size=16,
                                        lr=5e-3, trainable=9216, train_s=3.1, train_tok_s=2900.0, loss_first=6.93,
                                        loss_last=2.41))
    HONEST_FILES.update({lab: {"benchmarks.json": honest.read_bytes()} for lab in BENCHMARK_LABS})
    yield HONEST_FILES
    HONEST_FILES.clear()


def _fabricated(honest: bytes) -> bytes:
    """Decode 10^6 times faster than measured and a peak memory of 1 kB: physically impossible numbers (and a
    fine-tune that trains more parameters than the model has, with a negative loss)."""
    records = json.loads(honest)
    for r in records:
        if "finetune" in r:
            r["finetune"].update(trainable=10 * r["params_total"], loss_last=-0.5)
        if "decode_tok_s" in r:
            r["decode_tok_s"] *= 1e6
            r["repeats"] = [x * 1e6 for x in r.get("repeats") or []]
        r["peak_mem_bytes"] = 1000
    return json.dumps(records).encode()


@pytest.mark.parametrize("lab", BENCHMARK_LABS)
def test_benchmark_checks_take_points_for_impossible_numbers_and_a_missing_file(lab):
    ns = solution_namespace(lab)
    fabricated = {"benchmarks.json": _fabricated(HONEST_FILES[lab]["benchmarks.json"])}
    _, results = grade_locally(lab, ns, files=fabricated, skip_functions=SLOW_FUNCTIONS)
    failed = {k for k, r in results.items() if r.status != "passed"}
    assert failed and {results[k].function for k in failed} == {"benchmarks"}
    assert any("impossible" in results[k].message or "at most" in results[k].message for k in failed)
    _, results = grade_locally(lab, ns, files={}, skip_functions=SLOW_FUNCTIONS)
    assert {k for k, r in results.items() if r.status != "passed"} == {
        k for k, r in results.items() if r.function == "benchmarks"}


def _ms(solution):
    return lambda model, ids, n: {**solution(model, ids, n), "ttft_s": 1000 * solution(model, ids, n)["ttft_s"]}


def _fewer_tokens(solution):
    def measure(model, ids, n):
        return solution(model, ids, max(2, n // 2))  # half the tokens asked for, numbers as if all were made
    return measure


def _megabytes(solution):
    return lambda model, ids, n: {**solution(model, ids, n), "peak_mem_bytes": solution(model, ids, n)[
        "peak_mem_bytes"] // 2**20}


def _scaled_by_10(solution):
    def measure(model, ids, n):
        r = solution(model, ids, n)
        return {**r, "ttft_s": r["ttft_s"] * 10, "decode_tok_s": r["decode_tok_s"] * 10}
    return measure


def _constants(solution):
    return lambda model, ids, n: {"ttft_s": 0.02, "decode_tok_s": 100.0, "peak_mem_bytes": 10**9}


def _clocked_by_a_logits_processor(solution):
    """A correct answer written differently (tests/generation_clocks.py): the clock is a LogitsProcessor."""
    return logits_processor_generation


BENCHMARK_LAB = "lab-2.4.1-mamba-inference"


@pytest.mark.parametrize(("wrong", "check"), [
    (_ms, "benchmark_ttft_agrees_with_the_grader"),
    (_fewer_tokens, "benchmark_generates_new_tokens"),
    (_megabytes, "benchmark_peak_memory"),
])
def test_dishonest_benchmark_generation_fails_its_check(wrong, check):
    """Timings have no misconception catalogue (no mutant reproduces a clock): each check's message must do."""
    ns = solution_namespace(BENCHMARK_LAB)
    ns["benchmark_generation"] = wrong(ns["benchmark_generation"])
    _, results = grade_locally(BENCHMARK_LAB, ns, select_check=check)
    assert results[check].status == "failed", results[check]


def _benchmark_checks(ns) -> dict:
    rubric = load_rubric(BENCHMARK_LAB)
    results, errors = run_checks(rubric, LocalCaller(ns), "seed", SubmissionContext("t", BENCHMARK_LAB, {}),
                                 [cid for cid, c in rubric.checks.items() if c.function == "benchmark_generation"])
    assert not errors, errors
    return {r.id: r for r in results}


def test_invented_benchmark_numbers_earn_no_point():
    ns = solution_namespace(BENCHMARK_LAB)
    ns["benchmark_generation"] = _constants(ns["benchmark_generation"])
    results = _benchmark_checks(ns)
    assert {k: r.status for k, r in results.items()} == dict.fromkeys(results, "failed")
    assert all("without running the model" in r.message for r in results.values())


def test_numbers_scaled_by_10_fail_both_agreement_checks_and_keep_the_evidence():
    ns = solution_namespace(BENCHMARK_LAB)
    ns["benchmark_generation"] = _scaled_by_10(ns["benchmark_generation"])
    results = _benchmark_checks(ns)
    failed = {k for k, r in results.items() if r.status == "failed"}
    assert failed == {"benchmark_ttft_agrees_with_the_grader", "benchmark_decode_agrees_with_the_grader"}, {
        k: r.message for k, r in results.items()}
    evidence = results["benchmark_decode_agrees_with_the_grader"].details["evidence"]
    assert set(evidence) == {"mamba", "llama"}
    for found in evidence.values():  # how the verdict was reached: the grader's timings, the student's, the ratios
        assert len(found["grader"]) == len(found["student"]) == len(found["hook_ratios"]) >= 4
        assert sorted(found["hook_ratios"])[len(found["hook_ratios"]) // 2] > found["hook_factor"]


def test_a_differently_written_honest_benchmark_passes_and_keeps_the_evidence():
    ns = solution_namespace(BENCHMARK_LAB)
    ns["benchmark_generation"] = _clocked_by_a_logits_processor(ns["benchmark_generation"])
    results = _benchmark_checks(ns)
    assert all(r.status == "passed" for r in results.values()), {k: r.message for k, r in results.items()}
    found = results["benchmark_ttft_agrees_with_the_grader"].details["evidence"]["llama"]
    assert len(found["grader"]) == len(found["student"]) and found["ratio"] > 0
    assert sorted(found["hook_ratios"])[len(found["hook_ratios"]) // 2] <= found["hook_factor"]
    assert results["benchmark_generates_new_tokens"].details["evidence"]["mamba"]["longest_generation"] >= 6


@pytest.mark.parametrize("lab", sorted(p.parent.name for p in rubrics_root().glob("*/rubric.yaml")))
def test_every_graded_function_has_a_visible_test_cell_with_its_points(lab):
    """formgrader and `nbgrader export` show the same autograded points as `sparkgrade export`."""
    totals: dict[str, float] = {}
    for spec in load_rubric(lab).checks.values():
        totals[spec.function] = totals.get(spec.function, 0) + spec.points
    nb = nbformat.read(assignments_root() / "source" / lab / f"{lab}.ipynb", as_version=4)
    cells = {c.metadata["nbgrader"]["grade_id"].removeprefix("test_"): c.metadata["nbgrader"]["points"]
             for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")
             and not c.metadata["nbgrader"].get("solution")}
    assert {fn: cells.get(fn) for fn in totals} == totals


def test_a_router_sending_tokens_to_the_wrong_experts_keeps_both_loads_for_the_feedback_bars():
    from autograder.feedback.page import check_view

    lab = "lab-2.4.4-moe-router"
    ns = solution_namespace(lab)

    def first_two(logits, top_k, normalize=True):  # every token to experts 0 and 1
        weights, _ = reference.top_k_routing(logits, top_k, normalize)
        return weights, torch.arange(top_k).expand(logits.shape[0], top_k)

    ns["top_k_routing"] = first_two
    rubric, results = grade_locally(lab, ns, select_check="routing_selects_top_k")
    check = results["routing_selects_top_k"]
    assert check.status == "failed" and "most probable" in check.message
    load, reference_load = check.details["expert_load"], check.details["expert_load_reference"]
    assert load == [64, 64, 0, 0, 0, 0, 0, 0]
    assert len(reference_load) == 8 and sum(reference_load) == 128 and reference_load != load
    (figure,) = check_view(check, rubric).figures
    assert figure.uri.startswith("data:image/png;base64,") and "reference router" in figure.caption

    def off_by_one(logits, top_k, normalize=True):  # expert ids 1..E: the last one does not exist
        weights, experts = reference.top_k_routing(logits, top_k, normalize)
        return weights, experts + 1

    ns["top_k_routing"] = off_by_one
    _, results = grade_locally(lab, ns, select_check="routing_selects_top_k")
    check = results["routing_selects_top_k"]
    assert check.status == "failed" and "outside 0..7" in check.message, check.message
