"""Benchmark plausibility: judge a student's benchmarks.json against physics without rerunning it.

Pure core (functions of data) and one thin CLI shell (``cmd_check_benchmarks``), one module per concern:

    schema       the records of benchmarks.json and the Verdict
    margins      every margin and threshold, with the reason for its size
    shapes       a record's model shape (catalogue, config, record) and its workload (bytes, FLOPs)
    rules        per-record physics (decode, TTFT, memory, parameters, perplexity, training)
    consistency  rules across records, and signals of invented numbers
    verdicts     check_benchmarks, spot_check, scoring
    cli          `sparkgrade check-benchmarks`

The hardware limits and the model maths are the trusted ``reference`` package's (hardware profiles, KV cache /
SSM state, parameter counts, catalogue).

Schema of benchmarks.json: a JSON list of records, each an object.

    Inference record (labs 2.4.1, 2.4.5; ``kind`` "inference", the default when absent)
        model            str     a catalogue name or HF id (mamba-2.8b, EleutherAI/pythia-1b, ...) or any name
        architecture     "transformer" | "mamba" | "moe" | "hybrid"
        params_total     int > 0 all parameters (every expert)
        params_active    int > 0 parameters one token uses (= params_total for a dense model)
        dtype            str     weight dtype: bf16/bfloat16, fp16/float16, fp32/float32, fp8, int8, int4, nf4, fp4
        batch_size       int > 0
        context_len      int > 0 prompt tokens per sequence
        new_tokens       int > 0 generated tokens per sequence
        ttft_s           float > 0  seconds from the call to the first new token: the whole batch's prompts
                                    prefilled, then one step (no prompt cache)
        decode_tok_s     float > 0  new tokens per second of one sequence after its first: (new_tokens - 1) / time
                                    from the first to the last new token (a batch makes batch_size times as many);
                                    null/NaN when not measured (new_tokens = 1)
        peak_mem_bytes   int > 0 peak memory of the run: torch.cuda.max_memory_allocated, the allocator's maximum
                                 of allocated bytes since reset_peak_memory_stats (CPU: peak RSS)
        device           str     what the run reported (free text); the limits come from --hardware
      optional
        perplexity       float > 0   where measured;  perplexity_dataset: str
        config           object  the model's HF config (transformers field names; a to_diff_dict() is enough)
        repeats          [float, ...] per-repeat decode_tok_s, or {"decode_tok_s": [...], "ttft_s": [...]}
        notes            str | [str]  declared techniques: "speculative decoding" (raises the decode bound by at
                                      most 1 + draft_tokens) and "prompt caching" legitimately beat the naive
                                      bounds; "offload" (weights not all on the device)
        draft_tokens     int > 0 speculative decoding: draft tokens per verification step (default 8)
        weights          "pretrained" (default) | "random" | "finetuned"
        lab              str

    Training record (lab 2.4.6; ``kind`` "train")
        model, architecture, params_total, params_active, dtype, batch_size, context_len (tokens per example),
        device as above, and
        params_trainable     int > 0   e.g. the LoRA adapters' parameters
        train_peak_mem_bytes int > 0   peak memory of training
        losses               [float, ...]  training loss (nats/token) in logging order; NaN allowed (divergence)
      optional: method ("lora" | "qlora" | "full"), lora_rank, steps, train_tok_s, perplexity, config, notes,
        weights, lab

    Unknown fields are rejected: a typo such as "perplexty" would otherwise drop a measurement silently.

The model's shape comes from the catalogue (reference.catalogue) when the model is known there, which then wins
over the record, and otherwise from the record's ``config``. Without either, only the record's own counts are used
and the bounds get an extra slack (UNKNOWN_SHAPE_SLACK).

Verdicts: "impossible" breaks physics (beyond a stated margin); "suspicious" is possible but unlikely and left for a
person to look at. Every margin is a named constant in ``margins`` with the reason for its size.
"""

from __future__ import annotations

from autograder.plausibility.cli import cmd_check_benchmarks
from autograder.plausibility.margins import *  # noqa: F403  (every margin, as before the split)
from autograder.plausibility.rules import (
    DECODE_DEFINITION,
    MEMORY_DEFINITION,
    TTFT_DEFINITION,
    Limit,
    decode_limit,
    draft_tokens,
    ttft_limit,
)
from autograder.plausibility.schema import (
    Architecture,
    BenchmarkRecord,
    InferenceRecord,
    Repeats,
    Severity,
    TrainRecord,
    Verdict,
    load_records,
    parse_records,
)
from autograder.plausibility.shapes import MAX_CONFIG_LAYERS, Shape, Workload, resolve_shape, workload
from autograder.plausibility.verdicts import (
    DEFAULT_RUBRIC,
    SPOT_FIELDS,
    Judgement,
    PlausibilityScore,
    RubricPoints,
    check_benchmarks,
    judge_file,
    score_verdicts,
    spot_check,
)

__all__ = [
    "DECODE_DEFINITION",
    "DEFAULT_RUBRIC",
    "MAX_CONFIG_LAYERS",
    "MEMORY_DEFINITION",
    "SPOT_FIELDS",
    "TTFT_DEFINITION",
    "Architecture",
    "BenchmarkRecord",
    "InferenceRecord",
    "Judgement",
    "Limit",
    "PlausibilityScore",
    "Repeats",
    "RubricPoints",
    "Severity",
    "Shape",
    "TrainRecord",
    "Verdict",
    "Workload",
    "check_benchmarks",
    "cmd_check_benchmarks",
    "decode_limit",
    "draft_tokens",
    "judge_file",
    "load_records",
    "parse_records",
    "resolve_shape",
    "score_verdicts",
    "spot_check",
    "ttft_limit",
    "workload",
]
