"""The call harness's probes through a real kernel (sandbox/inside/harness.py): the forward hook that sees whether a
benchmark ran the model, and the grader's own generation timing taken in the student's kernel, held against the
runner's clock outside it.

The kernel runs with --no-sandbox semantics (the runner and the harness are the same; bubblewrap's isolation is
proven in test_sandbox.py), so these run wherever a kernel can start.
"""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import nbformat
import pytest
import torch

from autograder.checks.plugin import StudentProxy
from autograder.rubric import rubric_dir
from autograder.sandbox import Limits, Model, Sandbox

LIMITS = Limits(notebook_s=120, call_s=60, memory_bytes=4 << 30, startup_s=120)

HONEST = '''
import time, torch

def benchmark_generation(model, input_ids, new_tokens):
    kw = dict(attention_mask=torch.ones_like(input_ids), do_sample=False, pad_token_id=model.config.eos_token_id)
    with torch.inference_mode():
        model.generate(input_ids, max_new_tokens=2, min_new_tokens=2, **kw)
        t = time.perf_counter()
        model.generate(input_ids, max_new_tokens=1, min_new_tokens=1, **kw)
        ttft = time.perf_counter() - t
        t = time.perf_counter()
        model.generate(input_ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **kw)
        total = time.perf_counter() - t
    return {"ttft_s": ttft, "decode_tok_s": (new_tokens - 1) / (total - ttft), "peak_mem_bytes": 10**9}
'''

# The cheap attack on a shared kernel: a clock that runs 20x slow makes every measurement in it look 20x faster,
# the grader's own included, so agreeing with it would be easy. The runner's clock is outside the kernel.
SLOW_CLOCK = HONEST + '''
_real = time.perf_counter
_t0 = _real()
time.perf_counter = lambda: _t0 + (_real() - _t0) / 20
'''


def _sandbox(source: str, models: Path) -> Sandbox:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    return Sandbox(nbformat.writes(nb).encode(), limits=LIMITS, models_dir=models, no_sandbox=True)


def _check_module():
    path = rubric_dir("lab-2.4.1-mamba-inference") / "test_benchmark_generation.py"
    spec = importlib.util.spec_from_file_location("sg_probe_check", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def check():
    return _check_module()


def test_the_kernel_counts_forward_calls_and_times_the_reference_next_to_the_student(tiny_models_dir, check):
    with _sandbox(HONEST, tiny_models_dir) as sb:
        assert sb.run().status == "ok"
        student = StudentProxy(sb, "cpu")
        ids = torch.randint(3, 500, (1, 20), generator=torch.Generator().manual_seed(0))
        probed = student.counting_forwards("benchmark_generation", Model("mamba"), ids, 7)
        forwards = probed.observed["forwards"]
        # warm-up (20, 1), one token (20), the measured generation (20, 1 x 6), each stamped start <= end in order
        assert [n for n, _, _ in forwards] == [20, 1, 20, 20, 1, 1, 1, 1, 1, 1]
        assert all(0 <= a <= b for _, a, b in forwards)
        assert all(b <= a for (_, _, b), (_, a, _) in itertools.pairwise(forwards))
        assert check.longest_generation(forwards, 20) == 7
        assert probed.observed["call_s"] >= forwards[-1][2]
        bounds = check.hook_bounds(probed, 20, 7)
        assert 0 < bounds["ttft_min_s"] <= bounds["ttft_max_s"] and bounds["decode_max_tok_s"] > 0
        assert set(probed.value) == {"ttft_s", "decode_tok_s", "peak_mem_bytes"}
        ref = student.reference_generation(Model("mamba"), ids, 7)
        assert ref.value["ttft_s"] > 0 and ref.value["decode_tok_s"] > 0 and ref.value["peak_mem_bytes"] > 10**6
        assert 0 < check.implied_s(ref.value, 7) < ref.round_trip_s  # the runner's clock holds the kernel's
        assert len(student.calls) == 1  # the grader's own timing is not the student's call


def test_a_slowed_clock_in_the_kernel_fails_against_the_runners_clock(tiny_models_dir, check):
    with _sandbox(SLOW_CLOCK, tiny_models_dir) as sb:
        assert sb.run().status == "ok"
        student = StudentProxy(sb, "cpu")
        ids = torch.randint(3, 500, (1, 20), generator=torch.Generator().manual_seed(1))
        pairs = check.interleaved(student, "llama", ids, 8, rounds=2)
        # Both sides agree with each other (the clock fooled the grader's timing too) ...
        ratio = check.best_ratio([g.value["decode_tok_s"] for _, g in pairs],
                                 [r.value["decode_tok_s"] for r, _ in pairs], "decode_tok_s")
        assert 1 / 20 < ratio < 20
        # ... but the grader's timed generation no longer fills its call as the runner timed it.
        with pytest.raises(check.CheckFailed, match="clock disagrees"):
            check.fits_the_calls(pairs, "llama", 8)
