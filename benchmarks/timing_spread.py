"""How far an honest benchmark_generation strays from the grader's own timing: the spread that lab 2.4.1's agreement
factor (rubrics/lab-2.4.1-mamba-inference/test_benchmark_generation.py, HOOK_FACTOR) must cover, and why the
separately timed comparison is kept for the record only.

Each trial is what one check does: ROUNDS pairs of (grader's timing, student's timing) taken back to back, the order
alternating, and the ratio student / grader of each side's best round (check.best_ratio). Trials run idle and with
every core kept busy by a load generator (busy-looping processes, stopped at the end of the phase), for two honest
answers: the course's and one written differently (a LogitsProcessor as the clock). The report is
the range of the ratios and the largest deviation either way, per answer, phase, model and quantity.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/timing_spread.py [--trials 40] [--phases idle loaded] [--models DIR]
        [--json OUT]

Not part of the test suite: it takes minutes, and its numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the honest answer written differently: tests/generation_clocks.py

from generation_clocks import logits_processor_generation  # noqa: E402

from autograder.checks.plugin import Probed  # noqa: E402
from autograder.paths import assignments_root  # noqa: E402
from autograder.rubric import rubric_dir  # noqa: E402
from autograder.sandbox.inside.harness import _sparkgrade_count_forwards as counting_forwards  # noqa: E402
from autograder.sandbox.inside.harness import _sparkgrade_reference_generation as grader_timing  # noqa: E402

LAB = "lab-2.4.1-mamba-inference"


def _check_module() -> Any:
    spec = importlib.util.spec_from_file_location("sg_bench_check", rubric_dir(LAB) / "test_benchmark_generation.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def course_answer() -> Callable[..., dict[str, Any]]:
    """The source notebook's benchmark_generation, with the lab's helpers (PeakMemory) as its setup cell gives them."""
    spec = importlib.util.spec_from_file_location("sg_labkit", assignments_root() / "labkit.py")
    assert spec and spec.loader
    kit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kit)
    ns: dict[str, Any] = {"torch": torch, "time": time, **{k: v for k, v in vars(kit).items() if k[0] != "_"}}
    nb = nbformat.read(assignments_root() / "source" / LAB / f"{LAB}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "benchmark_generation":
            exec(compile(cell.source, "<benchmark_generation>", "exec"), ns)
    return ns["benchmark_generation"]


def _busy(stop_at: float) -> None:
    x = 0
    while time.time() < stop_at:
        x += 1


class Load:
    """Every core busy until the phase ends (and at most ``limit_s``, should this process die)."""

    def __init__(self, workers: int, limit_s: float) -> None:
        self.workers, self.limit_s = workers, limit_s
        self.procs: list[multiprocessing.Process] = []

    def __enter__(self) -> Load:
        stop_at = time.time() + self.limit_s
        self.procs = [multiprocessing.Process(target=_busy, args=(stop_at,), daemon=True) for _ in range(self.workers)]
        for p in self.procs:
            p.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.join()


def trial(check: Any, answer: Callable[..., dict[str, Any]], model: Any, ids: torch.Tensor, n: int,
          rounds: int) -> dict[str, float]:
    """One check's statistics over ``rounds`` interleaved (grader, student) pairs: the ratio to the grader's timing
    (check.best_ratio) and the median ratio to the bounds of the generation the hooks watched (check.within_hooks)."""
    got: dict[str, list[float]] = {"ttft_s": [], "decode_tok_s": []}
    ref: dict[str, list[float]] = {"ttft_s": [], "decode_tok_s": []}
    hooks: dict[str, list[float]] = {"ttft_s": [], "decode_tok_s": []}

    def student() -> dict[str, Any]:  # as the kernel runs it: hooked, beside the sampling thread
        start = time.perf_counter()
        out = counting_forwards(answer, [model, ids, n], {})
        probed = Probed(out["value"], {"forwards": [tuple(f) for f in out["forwards"]], "call_s": out["call_s"]},
                        time.perf_counter() - start)
        for key in hooks:
            hooks[key].append(check.within_hooks(probed, key, int(ids.shape[1]), n)[1])
        return out["value"]

    for i in range(rounds):
        if i % 2 == 0:
            r, g = grader_timing(model, ids, n), student()
        else:
            g = student()
            r = grader_timing(model, ids, n)
        for key in got:
            got[key].append(g[key])
            ref[key].append(r[key])
    out = {f"grader {key}": check.best_ratio(got[key], ref[key], key) for key in got}
    out.update({f"hooks {key}": statistics.median(values) for key, values in hooks.items()})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--models", default=os.environ.get("SPARKGRADE_TEST_MODELS", "/tmp/sparkgrade-test-models"))
    parser.add_argument("--threads", type=int, default=2, help="torch threads, as the sandbox's limits give it")
    parser.add_argument("--phases", nargs="*", default=["idle", "loaded"], choices=["idle", "loaded"])
    parser.add_argument("--json", help="write every ratio here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    check = _check_module()
    from transformers import AutoModelForCausalLM

    models = {name: AutoModelForCausalLM.from_pretrained(Path(args.models) / name).eval() for name in check.MODELS}
    answers = {"course": course_answer(), "logits-processor": logits_processor_generation}
    rng = torch.Generator().manual_seed(0)
    found: dict[str, list[float]] = {}
    for phase in args.phases:
        load = Load(os.cpu_count() or 2, 3600) if phase == "loaded" else None
        start = time.perf_counter()
        if load:
            load.__enter__()
        try:
            for t in range(args.trials):
                for name, model in models.items():
                    ids = check.prompt(lambda n, m=model: m, rng, name)
                    n = int(torch.randint(8, 13, (1,), generator=rng))
                    for label, answer in answers.items():
                        for key, ratio in trial(check, answer, model, ids, n, check.ROUNDS).items():
                            found.setdefault(f"{label}|{phase}|{name}|{key}", []).append(ratio)
                            print(f"  {label} {phase} {name} {key}: {ratio:.3f}", file=sys.stderr, flush=True)
                print(f"{phase}: trial {t + 1}/{args.trials} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
        finally:
            if load:
                load.__exit__()
    print(f"'grader': student / grader, best of {check.ROUNDS} interleaved rounds each (recorded only); "
          "'hooks': median over the rounds of the student's number / the bound the hooks set in the same call "
          f"(allowed up to {check.HOOK_FACTOR}); {args.trials} trials per line")
    print(f"{'answer':20} {'phase':7} {'model':6} {'quantity':19} {'min':>7} {'median':>7} {'max':>7} {'worst x':>8}")
    for label, values in found.items():
        answer, phase, name, key = label.split("|")
        worst = math.exp(max(abs(math.log(v)) for v in values))
        print(f"{answer:20} {phase:7} {name:6} {key:19} {min(values):7.3f} {statistics.median(values):7.3f} "
              f"{max(values):7.3f} {worst:8.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(found, indent=1))


if __name__ == "__main__":
    main()
