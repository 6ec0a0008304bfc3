"""Hidden checks for benchmark_generation(model, input_ids, new_tokens) -> dict(ttft_s, decode_tok_s,
peak_mem_bytes).

Timings cannot be compared with a reference: the grader cannot time trusted code inside the sandbox. What is
checked is what any honest measurement satisfies: the reported times fit inside the wall time of the call as the
grader measured it (a measurement made during the call cannot be longer than the call), the decode time grows with
the number of tokens, and the peak memory holds at least the weights."""

from __future__ import annotations

import math
import time

import torch

from autograder.checks.api import CheckFailed
from autograder.sandbox import Model

KEYS = ("ttft_s", "decode_tok_s", "peak_mem_bytes")


def prompt(trusted_model, rng, name, length=16):
    vocab = trusted_model(name).config.vocab_size
    return torch.randint(3, vocab, (1, length), generator=rng)


def run(student, name, ids, new_tokens):
    """(result, seconds the whole call took as measured here), after checking the result's fields."""
    start = time.perf_counter()
    got = student.benchmark_generation(Model(name), ids, new_tokens)
    elapsed = time.perf_counter() - start
    if not isinstance(got, dict):
        raise CheckFailed(f"benchmark_generation should return a dict, got {type(got).__name__}")
    missing = [k for k in KEYS if k not in got]
    if missing:
        raise CheckFailed(f"benchmark_generation's dict lacks {', '.join(missing)} (it has {sorted(got)})")
    for key in ("ttft_s", "decode_tok_s"):
        value = got[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            raise CheckFailed(f"{key} should be a positive finite number (a Python float), got {value!r}")
    peak = got["peak_mem_bytes"]
    if isinstance(peak, bool) or not isinstance(peak, int) or peak <= 0:
        raise CheckFailed(f"peak_mem_bytes should be a positive int (bytes), got {peak!r}")
    return got, elapsed


def test_benchmark_result_fields(student, trusted_model, rng):
    run(student, "mamba", prompt(trusted_model, rng, "mamba"), 4)


def test_benchmark_fits_the_call(student, trusted_model, rng):
    for name, new_tokens in (("mamba", 6), ("llama", 8)):
        got, elapsed = run(student, name, prompt(trusted_model, rng, name, 24), new_tokens)
        implied = got["ttft_s"] + (new_tokens - 1) / got["decode_tok_s"]
        # Small slack for the two clocks' resolution; the call also includes the warm-up and the transfers.
        if implied > 1.02 * elapsed + 0.02:
            raise CheckFailed(
                f"{name}: ttft_s + (new_tokens - 1) / decode_tok_s = {implied:.3g} s, but the whole call took "
                f"{elapsed:.3g} s. Report seconds (not milliseconds) and tokens per second (not seconds per "
                "token), timed around the generation itself.",
                {"output": "implied_s", "value": implied, "expected": elapsed})


def test_benchmark_scales_with_new_tokens(student, trusted_model, rng):
    ids = prompt(trusted_model, rng, "llama")
    shorts = [run(student, "llama", ids, 3)[0] for _ in range(3)]
    longs = [run(student, "llama", ids, 21)[0] for _ in range(2)]
    # Honest decode time for 20 tokens is ~10x that for 2; ignoring new_tokens gives about 1x. The fastest run of
    # each kind and a 3x bar sit between the two: a stall of the machine must hit every short run to fail an honest
    # measurement, and every long run to pass a dishonest one.
    t_short = min(2 / r["decode_tok_s"] for r in shorts)
    t_long = min(20 / r["decode_tok_s"] for r in longs)
    if t_long < 3 * t_short:
        raise CheckFailed(
            f"decoding 20 tokens took {t_long:.3g} s by your numbers, decoding 2 took {t_short:.3g} s: the time "
            "should grow with new_tokens. Force exactly new_tokens tokens (min_new_tokens, no early stop at EOS) "
            "and time from the first to the last new token.")


def test_benchmark_peak_memory(student, trusted_model, rng):
    weights = sum(p.numel() * p.element_size() for p in trusted_model("mamba").parameters())
    got, _ = run(student, "mamba", prompt(trusted_model, rng, "mamba"), 3)
    if got["peak_mem_bytes"] < weights:
        raise CheckFailed(
            f"peak_mem_bytes is {got['peak_mem_bytes']:,}, less than the model's weights alone ({weights:,} bytes). "
            "Report bytes (not KB/MB/GB), measured around the generation with the lab's PeakMemory helper.",
            {"output": "peak_mem_bytes", "value": got["peak_mem_bytes"], "expected": weights})
