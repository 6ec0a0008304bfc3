"""Plausibility held against the published record (tests/data/published/measurements.json): no published number
is called impossible, and fabrications derived from them (1.5x to 30x their bound, optimisations claimed in notes,
memory below the weights, a device that contradicts its numbers) are each caught."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from published import MEASUREMENTS, RULE_FIELD, SOURCES, margin, record

from autograder.plausibility import check_benchmarks, parse_records, resolve_shape, workload
from reference.hardware import get_profile

# A published number the checker may call impossible, with why the source's definition differs from ours. Empty:
# every published number passes.
DEFINITION_DIFFERS: dict[int, str] = {}


def test_the_published_set_has_forty_sourced_measurements_on_four_devices():
    assert len(MEASUREMENTS) >= 40
    devices = Counter(m["device"] for m in MEASUREMENTS)
    assert len(devices) >= 4 and devices["dgx-spark"] >= 10
    for m in MEASUREMENTS:
        assert m["source"] in SOURCES and SOURCES[m["source"]]["url"].startswith("https://")
        assert m["printed"] and m["measured"] in ("decode_tok_s", "ttft_s")
        assert m["value"] > 0


@pytest.mark.parametrize("index", range(len(MEASUREMENTS)))
def test_no_published_measurement_is_called_impossible(index):
    m = MEASUREMENTS[index]
    bad = [v for v in check_benchmarks([record(m)], m["device"])
           if v.severity == "impossible" and RULE_FIELD.get(v.rule) == m["measured"]]
    if index in DEFINITION_DIFFERS:
        assert bad, f"listed as a definition difference ({DEFINITION_DIFFERS[index]}) but passes: drop it"
    else:
        assert not bad, f"{m['printed']} ({SOURCES[m['source']]['url']}): {bad[0].message}"


def test_published_margins_stay_below_their_bounds():
    margins = [margin(i, m) for i, m in enumerate(MEASUREMENTS)]
    assert max(x.ratio for x in margins) < 1.0
    # the bounds are not vacuous: some published decode speeds reach half their roofline
    assert max(x.ratio for x in margins if x.field == "decode_tok_s") > 0.5


def _first(device: str, measured: str, **match: Any) -> tuple[int, dict[str, Any]]:
    for i, m in enumerate(MEASUREMENTS):
        if m["device"] == device and m["measured"] == measured and all(m.get(k) == v for k, v in match.items()):
            return i, m
    raise LookupError((device, measured, match))


def _bound_record(device: str, measured: str, factor: float, **match: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(measurement, a record whose measured field is ``factor`` times past its bound)."""
    i, m = _first(device, measured, **match)
    mg = margin(i, m)
    value = mg.bound * factor if measured == "decode_tok_s" else mg.bound / factor
    return m, record(m, **{measured: value})


def _weights(m: dict[str, Any]) -> float:
    (r,) = parse_records([record(m)])
    return workload(r, resolve_shape(r)).weight_bytes


def _fabrications() -> list[tuple[str, dict[str, Any], str, str]]:
    """(what, record, device judged on, rule that must call it impossible)."""
    out = []
    for device, measured, factor, match in [
        ("dgx-spark", "decode_tok_s", 1.5, {"model": "openai/gpt-oss-120b"}),
        ("dgx-spark", "decode_tok_s", 30.0, {"model": "openai/gpt-oss-20b"}),
        ("dgx-spark", "ttft_s", 1.5, {"model": "openai/gpt-oss-120b"}),
        ("h100-sxm", "decode_tok_s", 1.5, {"batch_size": 1024}),
        ("a100-80gb", "ttft_s", 3.0, {"model": "meta-llama/Llama-2-7b-hf"}),
        ("rtx-4090", "ttft_s", 1.5, {"context_len": 2048}),
        ("rtx-4090", "ttft_s", 30.0, {"context_len": 512}),
    ]:
        m, rec = _bound_record(device, measured, factor, **match)
        rule = "decode_bound" if measured == "decode_tok_s" else "ttft_bound"
        out.append((f"{m['model']} {measured} {factor:g}x its bound on {device}", rec, device, rule))
    # an optimisation claimed in notes: speculation multiplies the bound by 1 + draft tokens, never more
    m, rec = _bound_record("dgx-spark", "decode_tok_s", 28.0, model="openai/gpt-oss-120b")
    out.append(("28x the bound, 'speculative decoding' in notes", {**rec, "notes": "speculative decoding (EAGLE-3)"},
                "dgx-spark", "decode_bound"))
    m, rec = _bound_record("dgx-spark", "decode_tok_s", 5.0, model="openai/gpt-oss-20b")
    out.append(("5x the bound, speculative decoding with 2 draft tokens",
                {**rec, "notes": "speculative decoding", "draft_tokens": 2}, "dgx-spark", "decode_bound"))
    m, rec = _bound_record("h100-sxm", "decode_tok_s", 2.0, model="EleutherAI/gpt-j-6b")
    out.append(("2x the bound, 'CUDA graphs and FlashAttention' in notes",
                {**rec, "notes": "CUDA graphs, FlashAttention-2, torch.compile"}, "h100-sxm", "decode_bound"))
    # the whole batch's tokens reported as one sequence's: TensorRT-LLM's 26,150 out tok/s at batch 1024
    _, m = _first("h100-sxm", "decode_tok_s", batch_size=1024)
    out.append(("a batch's throughput reported per sequence", record(m, decode_tok_s=26_150.0), "h100-sxm",
                "decode_bound"))
    # a batch of 32 MoE sequences at the batch-1 speed: it reads nearly every expert, not 4 of 32
    _, m = _first("dgx-spark", "decode_tok_s", model="openai/gpt-oss-20b", context_len=1)
    out.append(("gpt-oss-20b at batch 32 with its batch-1 speed", record(m, batch_size=32), "dgx-spark",
                "decode_bound"))
    # memory below the weights
    for device, model in [("dgx-spark", "openai/gpt-oss-120b"), ("a100-80gb", "EleutherAI/gpt-j-6b")]:
        _, m = _first(device, "decode_tok_s", model=model)
        out.append((f"{model} peak memory at half its weights", record(m, peak_mem_bytes=int(_weights(m) / 2) + 7),
                    device, "memory_floor"))
    # a device that contradicts its numbers
    _, m = _first("h100-sxm", "decode_tok_s", model="meta-llama/Llama-2-7b-hf", batch_size=768)
    out.append(("H100 numbers claimed on a DGX Spark", record(m), "dgx-spark", "decode_bound"))
    _, m = _first("dgx-spark", "decode_tok_s", model="openai/gpt-oss-120b")
    out.append(("gpt-oss-120b (60 GB of weights) claimed on an RTX 4090",
                record(m, peak_mem_bytes=int(_weights(m) * 1.05) + 7), "rtx-4090", "memory_ceiling"))
    _, m = _first("h100-sxm", "ttft_s", model="EleutherAI/gpt-j-6b", context_len=2048)
    out.append(("H100 FP8 first-token latency claimed on an A100 in FP16", record(m, dtype="fp16"), "a100-80gb",
                "ttft_bound"))
    return out


FABRICATIONS = _fabrications()


def test_at_least_a_dozen_fabrications():
    assert len(FABRICATIONS) >= 12


@pytest.mark.parametrize(("what", "rec", "device", "rule"), FABRICATIONS, ids=[f[0] for f in FABRICATIONS])
def test_fabrication_derived_from_a_published_number_is_caught(what, rec, device, rule):
    verdicts = check_benchmarks([rec], get_profile(device))
    assert any(v.rule == rule and v.severity == "impossible" for v in verdicts), (what, verdicts)
