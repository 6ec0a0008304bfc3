"""Wrong variants of lab 2.4.1's functions that are no diagnosable misconception: the mutation harness
(tests/test_mutation.py) proves every check fails at least one of these or a catalogued mistake.

benchmark_generation's mutants are built on an honest measurement (the call harness's own greedy-generation timing,
the lab's method) and each gets one thing wrong that the checks are named after.
"""

from __future__ import annotations

from typing import Any

from autograder.checks.api import Misconception
from autograder.sandbox.inside.harness import _sparkgrade_reference_generation
from reference import kv_cache_bytes, mamba_state_bytes

MEMORY_MUTANTS = [
    Misconception("a constant", "kv_cache_bytes", "", lambda config, seq_len, batch_size=1, dtype_bytes=2: 2**30),
    Misconception("seq_len ignored", "kv_cache_bytes", "",
                  lambda config, seq_len, batch_size=1, dtype_bytes=2: kv_cache_bytes(config, 4096, batch_size,
                                                                                     dtype_bytes)),
    Misconception("dtype_bytes ignored", "kv_cache_bytes", "",
                  lambda config, seq_len, batch_size=1, dtype_bytes=2: kv_cache_bytes(config, seq_len, batch_size, 2)),
    Misconception("a float", "kv_cache_bytes", "",
                  lambda config, seq_len, batch_size=1, dtype_bytes=2: float(kv_cache_bytes(config, seq_len,
                                                                                            batch_size, dtype_bytes))),
    Misconception("a constant", "mamba_state_bytes", "", lambda config, batch_size=1, dtype_bytes=2: 13_107_200),
    Misconception("dtype_bytes ignored", "mamba_state_bytes", "",
                  lambda config, batch_size=1, dtype_bytes=2: mamba_state_bytes(config, batch_size, 2)),
]


def _weights(model: Any) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def _honest(model: Any, ids: Any, n: int) -> dict[str, Any]:
    return {**_sparkgrade_reference_generation(model, ids, n), "peak_mem_bytes": _weights(model)}


# -- benchmark_generation ------------------------------------------------------------------------------------------

def _bench_invented(model: Any, ids: Any, n: int) -> dict[str, Any]:
    return {"ttft_s": 0.02, "decode_tok_s": 100.0, "peak_mem_bytes": 10**9}


def _bench_ttft_ms(model: Any, ids: Any, n: int) -> dict[str, Any]:
    r = _honest(model, ids, n)
    return {**r, "ttft_s": r["ttft_s"] * 1000}


def _bench_seconds_per_token(model: Any, ids: Any, n: int) -> dict[str, Any]:
    r = _honest(model, ids, n)
    return {**r, "decode_tok_s": 1 / r["decode_tok_s"]}


def _bench_fewer_tokens(model: Any, ids: Any, n: int) -> dict[str, Any]:
    return _honest(model, ids, max(2, n // 2))


def _bench_peak_megabytes(model: Any, ids: Any, n: int) -> dict[str, Any]:
    r = _honest(model, ids, n)
    return {**r, "peak_mem_bytes": r["peak_mem_bytes"] // 2**20}


def _bench_peak_float(model: Any, ids: Any, n: int) -> dict[str, Any]:
    r = _honest(model, ids, n)
    return {**r, "peak_mem_bytes": float(r["peak_mem_bytes"])}


BENCHMARK_GENERATION_MUTANTS = [
    Misconception("invented numbers", "benchmark_generation",
                  "Constants that never ran the model: every check sees no forward call.", _bench_invented),
    Misconception("TTFT in milliseconds", "benchmark_generation",
                  "ttft_s is seconds; 1000x the grader's own timing.", _bench_ttft_ms),
    Misconception("seconds per token", "benchmark_generation",
                  "decode_tok_s is tokens per second, not its inverse.", _bench_seconds_per_token),
    Misconception("fewer tokens than asked", "benchmark_generation",
                  "Generates half of new_tokens and reports numbers as if all were made.", _bench_fewer_tokens),
    Misconception("peak memory in MB", "benchmark_generation",
                  "peak_mem_bytes is bytes: below the weights alone.", _bench_peak_megabytes),
    Misconception("peak memory as a float", "benchmark_generation",
                  "peak_mem_bytes must be an int.", _bench_peak_float),
]

MUTANTS = [*MEMORY_MUTANTS, *BENCHMARK_GENERATION_MUTANTS]
