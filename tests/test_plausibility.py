"""Benchmark plausibility: honest numbers pass, a record built to break each rule is caught, nothing honest is
called impossible. Honest data: the published DGX Spark measurements (docs/facts.md, "Hardware") and real CPU
runs of tiny models."""

from __future__ import annotations

import json
import math
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autograder.cli import main
from autograder.feedback.roofline import roofline_figure
from autograder.plausibility import (
    DEFAULT_RUBRIC,
    RubricPoints,
    Verdict,
    check_benchmarks,
    parse_records,
    resolve_shape,
    score_verdicts,
    spot_check,
    workload,
)
from reference.catalogue import MODELS
from reference.hardware import PROFILES, get_profile
from reference.memory import (
    dtype_bytes,
    kv_cache_bytes,
    mamba_state_bytes,
    prefill_flops,
    routed_expert_params_read,
)

DATA = Path(__file__).parent / "data" / "benchmarks"
QWEN3_8B = 8_190_735_360


def qwen(**over: Any) -> dict[str, Any]:
    """Qwen3-8B BF16 on the Spark, 13.1 tok/s decode (docs/facts.md); TTFT at ~25 TFLOP/s of prefill."""
    rec = {"model": "Qwen/Qwen3-8B", "architecture": "transformer", "params_total": QWEN3_8B,
           "params_active": QWEN3_8B, "dtype": "bfloat16", "batch_size": 1, "context_len": 512, "new_tokens": 256,
           "ttft_s": 0.2974, "decode_tok_s": 13.1, "peak_mem_bytes": 16_713_452_544, "device": "NVIDIA GB10"}
    return {**rec, **over}


def mamba(name: str = "mamba-130m", **over: Any) -> dict[str, Any]:
    e = MODELS[name]
    rec = {"model": e.hf_id, "architecture": "mamba", "params_total": e.total, "params_active": e.total,
           "dtype": "bfloat16", "batch_size": 1, "context_len": 1024, "new_tokens": 128, "ttft_s": 0.0613,
           "decode_tok_s": 58.37, "peak_mem_bytes": 412_385_792, "device": "NVIDIA GB10"}
    return {**rec, **over}


def rules(records: list[dict[str, Any]], hw: str = "dgx-spark") -> dict[str, str]:
    """rule -> worst severity among the verdicts."""
    out: dict[str, str] = {}
    for v in check_benchmarks(records, hw):
        if out.get(v.rule) != "impossible":
            out[v.rule] = v.severity
    return out


# --- honest numbers -------------------------------------------------------------------------------------------


def test_published_spark_measurements_pass():
    records = json.loads((DATA / "spark_honest.json").read_text())
    assert check_benchmarks(records, "dgx-spark") == []


@pytest.mark.parametrize("hw", ["h100-sxm", "h200", "a100-80gb", "cpu"])
def test_spark_numbers_are_not_impossible_on_faster_devices(hw):
    records = json.loads((DATA / "spark_honest.json").read_text())
    assert not [v for v in check_benchmarks(records, hw) if v.severity == "impossible"]


@settings(max_examples=150, deadline=None)
@given(
    name=st.sampled_from(sorted(MODELS)),
    hw=st.sampled_from(sorted(PROFILES)),
    dtype=st.sampled_from(["bf16", "fp16", "fp32", "fp8"]),
    batch=st.sampled_from([1, 1, 4, 32]),
    ctx=st.sampled_from([128, 4096, 32768]),
    bw_eff=st.floats(0.05, 0.9),
    flops_eff=st.floats(0.02, 0.7),
    overhead=st.floats(1.0, 1.5),
)
def test_records_within_physics_are_never_impossible(name, hw, dtype, batch, ctx, bw_eff, flops_eff, overhead):
    """Numbers a real device could produce (60-90 % style efficiencies, weights + cache + overhead) pass."""
    e, p = MODELS[name], get_profile(hw)
    wb = dtype_bytes(dtype)
    est = e.estimated
    kv_b = wb if wb >= 2 else 1
    one = routed_expert_params_read(e.config, 1)  # a batch, and a prompt, touch more experts than one token
    read = (e.active - (0 if est.tied else est.embedding)) * wb + kv_cache_bytes(e.config, ctx, batch, kv_b)
    read += (routed_expert_params_read(e.config, batch) - one) * wb
    read += mamba_state_bytes(e.config, batch, wb)
    decode = min(bw_eff * p.bandwidth_bytes_s / read, flops_eff * p.peak_flops(wb) / (2 * e.active * batch))
    flops = prefill_flops(e.config, est, ctx, batch)
    prefill_read = (e.active + routed_expert_params_read(e.config, batch * ctx) - one) * wb
    ttft = max(flops / (flops_eff * p.peak_flops(wb)), (prefill_read / p.bandwidth_bytes_s) / bw_eff)
    peak = (e.total * wb + kv_cache_bytes(e.config, ctx + 64, batch, kv_b)
            + mamba_state_bytes(e.config, batch, wb)) * overhead
    if peak > p.usable_memory_bytes:
        return  # does not fit this device: nobody could have measured it
    arch = e.architecture
    rec = {"model": e.hf_id, "architecture": arch, "params_total": e.total, "params_active": e.active,
           "dtype": dtype, "batch_size": batch, "context_len": ctx, "new_tokens": 64, "ttft_s": ttft,
           "decode_tok_s": decode, "peak_mem_bytes": int(peak) + 12_345, "device": "gpu"}
    bad = [v for v in check_benchmarks([rec], p) if v.severity == "impossible"]
    assert not bad, bad[0].message


def _rss_peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _measure(model, torch, vocab: int, ctx: int, new: int, repeats: int = 3) -> dict[str, Any]:
    """TTFT = generate one token; decode = the extra tokens of a longer generate over the extra time."""
    g = torch.Generator().manual_seed(ctx)
    ids = torch.randint(3, vocab, (1, ctx), generator=g)
    kw = {"do_sample": False, "pad_token_id": 0, "attention_mask": torch.ones_like(ids)}
    ttfts, decodes = [], []
    with torch.inference_mode():
        model.generate(ids, max_new_tokens=2, min_new_tokens=2, **kw)  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            model.generate(ids, max_new_tokens=1, min_new_tokens=1, **kw)
            t1 = time.perf_counter()
            model.generate(ids, max_new_tokens=new, min_new_tokens=new, **kw)
            t2 = time.perf_counter()
            ttfts.append(t1 - t0)
            decodes.append((new - 1) / max((t2 - t1) - (t1 - t0), 1e-6))
        loss = model(ids, labels=ids).loss.item()
    return {"ttft_s": statistics.median(ttfts), "decode_tok_s": statistics.median(decodes),
            "repeats": {"decode_tok_s": decodes, "ttft_s": ttfts}, "perplexity": math.exp(loss)}


def test_real_tiny_model_measurements_on_this_cpu_pass():
    torch = pytest.importorskip("torch")
    T = pytest.importorskip("transformers")
    T.logging.set_verbosity_error()
    torch.manual_seed(0)
    vocab = 512
    configs = {
        "tiny-llama": ("transformer", T.LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128,
                                                     num_hidden_layers=2, num_attention_heads=4,
                                                     num_key_value_heads=2, max_position_embeddings=1024)),
        "tiny-mamba": ("mamba", T.MambaConfig(vocab_size=vocab, hidden_size=64, num_hidden_layers=2, state_size=8)),
    }
    records = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest, and the machine's cores are shared
    try:
        records = _measure_tiny_models(torch, T, configs, vocab)
    finally:
        torch.set_num_threads(threads)
    verdicts = check_benchmarks(parse_records(json.loads(json.dumps(records))), "cpu")
    assert not [v for v in verdicts if v.severity == "impossible"], [v.message for v in verdicts]
    # a random model's perplexity sits near its vocabulary: within the rule's range
    assert "perplexity_range" not in {v.rule for v in verdicts}
    for r in records:
        assert vocab / 2 < r["perplexity"] < 4 * vocab


def _measure_tiny_models(torch, T, configs, vocab: int) -> list[dict[str, Any]]:
    records = []
    for name, (arch, cfg) in configs.items():
        model_cls = T.LlamaForCausalLM if arch == "transformer" else T.MambaForCausalLM
        model = model_cls(cfg).eval()
        n = sum(p.numel() for p in model.parameters())
        for ctx in (16, 128):
            m = _measure(model, torch, vocab, ctx, new=6)
            records.append({"model": name, "architecture": arch, "params_total": n, "params_active": n,
                            "dtype": "float32", "batch_size": 1, "context_len": ctx, "new_tokens": 6,
                            "peak_mem_bytes": _rss_peak(), "device": "cpu", "weights": "random",
                            "config": cfg.to_diff_dict() | {"model_type": cfg.model_type}, **m})
    return records


# --- each rule caught -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("records", "rule", "severity"),
    [
        ([qwen(decode_tok_s=40.2)], "decode_bound", "impossible"),  # ~18 tok/s fits through 273 GB/s
        ([qwen(decode_tok_s=17.6)], "decode_bound", "suspicious"),  # 98 % of the bandwidth limit
        ([qwen(ttft_s=0.0113)], "ttft_bound", "impossible"),  # reading 15 GB of weights takes >= 55 ms
        ([qwen(context_len=16384, ttft_s=1.132)], "ttft_bound", "suspicious"),  # ~210 TFLOP at >100 TFLOP/s
        ([qwen(peak_mem_bytes=8_113_452_544)], "memory_floor", "impossible"),  # less than the bf16 weights
        ([qwen(peak_mem_bytes=140_113_452_544)], "memory_ceiling", "impossible"),  # more than the Spark has
        ([qwen(params_active=QWEN3_8B + 10**9)], "params_active_le_total", "impossible"),
        ([qwen(params_active=QWEN3_8B // 2)], "dense_params_active", "suspicious"),
        ([qwen(params_total=4_000_000_000, params_active=4_000_000_000)], "params_match_model", "suspicious"),
        ([qwen(architecture="mamba")], "architecture_match", "suspicious"),
        ([qwen(perplexity=0.87)], "perplexity_range", "impossible"),
        ([mamba(perplexity=3.1)], "perplexity_range", "suspicious"),  # published Pile value is 10.56
        ([qwen(perplexity=210_000.5)], "perplexity_range", "suspicious"),  # worse than uniform over 151936
        ([qwen(ttft_s=297.4)], "ttft_vs_decode", "suspicious"),  # milliseconds written as seconds
        ([qwen(repeats=[13.12, 13.12, 13.12], decode_tok_s=13.12)], "zero_variance_repeats", "suspicious"),
        ([qwen(repeats=[12.01, 12.13, 12.07])], "repeats_disagree", "suspicious"),
        ([qwen(peak_mem_bytes=17_000_000_000)], "round_numbers", "suspicious"),
        ([qwen(), qwen(context_len=32768, peak_mem_bytes=16_813_452_544, decode_tok_s=11.03, ttft_s=21.7)],
         "kv_memory_growth", "suspicious"),  # 4.7 GB more KV cache, 100 MB more memory
        ([mamba("mamba-2.8b", context_len=1024, peak_mem_bytes=6_113_452_544, decode_tok_s=21.3),
          mamba("mamba-2.8b", context_len=32768, peak_mem_bytes=98_613_452_544, decode_tok_s=21.1, ttft_s=2.1)],
         "mamba_memory_flat", "suspicious"),
        ([qwen(), qwen(context_len=4096, decode_tok_s=16.04, ttft_s=2.413, peak_mem_bytes=17_544_531_968)],
         "transformer_decode_slows", "suspicious"),
        ([mamba(), mamba(context_len=16384, decode_tok_s=31.2, ttft_s=0.7183, peak_mem_bytes=690_385_792)],
         "mamba_decode_flat", "suspicious"),
        ([qwen(ttft_s=2.413), qwen(context_len=4096, decode_tok_s=12.62, ttft_s=0.4123,
                                  peak_mem_bytes=17_544_531_968)], "ttft_grows_with_prompt", "suspicious"),
        ([mamba(), mamba(context_len=4096, ttft_s=0.2377, peak_mem_bytes=455_385_792)],
         "identical_across_configs", "suspicious"),  # 58.37 tok/s at both contexts
        ([mamba(ttft_s=0.1234), mamba("mamba-370m", ttft_s=0.1234, decode_tok_s=31.22,
                                      peak_mem_bytes=1_012_385_792)], "copied_between_models", "suspicious"),
        ([qwen(decode_tok_s=13.0, ttft_s=0.5), qwen(context_len=4096, decode_tok_s=12.0, ttft_s=3.0,
                                                     peak_mem_bytes=17_544_531_968)], "round_numbers", "suspicious"),
    ],
)
def test_record_built_to_break_a_rule_is_caught(records, rule, severity):
    assert rules(records).get(rule) == severity


def test_impossible_verdict_names_bound_number_and_miss():
    (v,) = check_benchmarks([qwen(decode_tok_s=40.2)], "dgx-spark")
    assert v.record == 0 and v.rule == "decode_bound" and v.value == 40.2
    assert v.bound is not None and v.bound < 40.2
    assert "40.2 tok/s" in v.message and "273 GB/s" in v.message and "x that" in v.message
    assert "synchronize" in v.message


def test_memory_in_mib_gets_a_unit_hint():
    (v,) = [v for v in check_benchmarks([qwen(peak_mem_bytes=15_939)], "dgx-spark") if v.rule == "memory_floor"]
    assert "MiB" in v.message


def test_declared_speculative_decoding_and_prompt_caching_may_beat_the_naive_bounds():
    fast = qwen(decode_tok_s=40.2, ttft_s=0.0113, notes="speculative decoding with a 0.6B draft; prompt caching")
    assert {"decode_bound", "ttft_bound"}.isdisjoint(rules([fast]))
    assert {"decode_bound", "ttft_bound"} <= set(rules([qwen(decode_tok_s=40.2, ttft_s=0.0113)]))


def test_unknown_model_without_config_is_judged_from_its_own_counts():
    rec = qwen(model="my-secret-8b", peak_mem_bytes=16_713_452_544)
    assert resolve_shape(parse_records([rec])[0]).source == "record"
    assert rules([rec]) == {}
    assert rules([qwen(model="my-secret-8b", decode_tok_s=60.3)])["decode_bound"] == "impossible"


def test_record_config_gives_the_shape_of_a_model_outside_the_catalogue():
    cfg = {"model_type": "llama", "num_hidden_layers": 36, "hidden_size": 4096, "intermediate_size": 12288,
           "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936}
    (rec,) = parse_records([qwen(model="student-qwen-clone", config=cfg)])
    shape = resolve_shape(rec)
    assert shape.source == "config" and shape.reference_total == pytest.approx(QWEN3_8B, rel=0.01)
    w = workload(rec, shape)
    assert w.cache_bytes_end == kv_cache_bytes(cfg, 512 + 256)


# --- training records (lab 2.4.6) -----------------------------------------------------------------------------


def lora(**over: Any) -> dict[str, Any]:
    e = MODELS["mamba-130m"]
    rec = {"kind": "train", "model": e.hf_id, "architecture": "mamba", "params_total": e.total + 1_327_104,
           "params_active": e.total + 1_327_104, "params_trainable": 1_327_104, "dtype": "bfloat16",
           "batch_size": 8, "context_len": 256, "device": "NVIDIA GB10", "train_peak_mem_bytes": 3_512_376_832,
           "losses": [3.412, 2.987, 2.655, 2.541, 2.478, 2.391], "method": "lora", "lora_rank": 8,
           "train_tok_s": 9_311.4}
    return {**rec, **over}


def test_honest_lora_record_passes():
    assert rules([lora()]) == {}


@pytest.mark.parametrize(
    ("over", "rule", "severity"),
    [
        ({"params_trainable": 10**9}, "train_trainable_le_total", "impossible"),
        ({"params_trainable": 100_000_000}, "train_lora_fraction", "suspicious"),
        ({"train_peak_mem_bytes": 103_512_376}, "train_memory_floor", "impossible"),
        ({"train_peak_mem_bytes": 203_512_376_832}, "train_memory_ceiling", "impossible"),
        ({"losses": [3.41, -0.2]}, "train_loss_range", "impossible"),
        ({"losses": [3.41, float("nan")]}, "train_loss_range", "suspicious"),
        ({"losses": [37.41, 30.2]}, "train_loss_range", "suspicious"),
        ({"losses": [3.412, 2.5431, 2.5431, 2.5431]}, "train_loss_zero_variance", "suspicious"),
        ({"train_tok_s": 2_500_000.0}, "train_throughput_bound", "impossible"),
    ],
)
def test_training_record_built_to_break_a_rule_is_caught(over, rule, severity):
    assert rules([lora(**over)]).get(rule) == severity


# --- schema ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"model": "x"}, "must be a JSON list"),
        ([qwen(), {k: v for k, v in qwen().items() if k != "ttft_s"}], "record 1, field 'ttft_s': Field required"),
        ([qwen(decode_tok_s="fast")], "record 0, field 'decode_tok_s'"),
        ([qwen(batch_size=0)], "record 0, field 'batch_size': Input should be greater than 0"),
        ([qwen(architecture="rnn")], "record 0, field 'architecture'"),
        ([qwen(dtype="float128")], "record 0, field 'dtype': unknown dtype"),
        ([qwen(decode_toks=3.0)], "record 0, field 'decode_toks': Extra inputs are not permitted"),
        ([qwen(kind="eval")], "record 0: kind must be 'inference' or 'train'"),
        ([qwen(ttft_s=float("inf"))], "record 0, field 'ttft_s'"),
    ],
)
def test_schema_errors_are_one_line_naming_record_and_field(data, expected):
    with pytest.raises(ValueError) as info:
        parse_records(data)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_schema_accepts_labkit_records():
    """labkit writes dtype without 'torch.', NaN decode for new_tokens == 1, a plain list of repeats, a diff config."""
    (rec,) = parse_records([qwen(dtype="bfloat16", decode_tok_s=float("nan"), new_tokens=1, repeats=[13.1, 13.2],
                                 notes="warm", config={"model_type": "qwen3", "hidden_size": 4096})])
    assert rec.dtype == "bf16" and rec.decode_tok_s is None and rec.repeats.decode_tok_s == (13.1, 13.2)
    assert rec.notes == ("warm",)


# --- spot check and scoring -----------------------------------------------------------------------------------


def test_spot_check_compares_within_the_rubric_tolerance():
    rec = qwen()
    assert spot_check(rec, {"decode_tok_s": 12.4, "ttft_s": 0.31}, 0.10) == []
    (v,) = spot_check(rec, {"decode_tok_s": 6.5}, {"decode_tok_s": 0.25}, index=3)
    assert v.rule == "spot_check" and v.severity == "suspicious" and v.record == 3
    assert "re-measured" in v.message and "102%" in v.message


def test_score_verdicts_charges_by_severity_and_rule_and_caps():
    vs = [Verdict(0, "decode_bound", "impossible", "m"), Verdict(1, "round_numbers", "suspicious", "m"),
          Verdict(2, "memory_floor", "impossible", "m")]
    default = score_verdicts(vs)
    assert default.points_lost == 2 * DEFAULT_RUBRIC.impossible
    assert "costs 2 points" in default.verdicts[0].message and "review" in default.verdicts[1].message
    custom = score_verdicts(vs, {"impossible": 3, "suspicious": 0.5, "rules": {"memory_floor": 1}, "max_total": 4})
    assert [v.points for v in custom.verdicts] == [3, 0.5, 0.5] and custom.points_lost == 4
    assert score_verdicts([], RubricPoints()).points_lost == 0


# --- CLI and figure -------------------------------------------------------------------------------------------


def test_cli_json_output_for_an_honest_file(capsys):
    assert main(["check-benchmarks", str(DATA / "spark_honest.json"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"records": 4, "verdicts": []}


def test_cli_reports_impossible_numbers_and_exits_1(tmp_path, capsys):
    f = tmp_path / "benchmarks.json"
    f.write_text(json.dumps([qwen(), qwen(context_len=4096, decode_tok_s=40.2, ttft_s=2.413,
                                          peak_mem_bytes=17_544_531_968)]))
    assert main(["check-benchmarks", str(f), "--hardware", "dgx-spark", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["records"] == 2
    (v,) = [v for v in out["verdicts"] if v["rule"] == "decode_bound"]
    assert set(v) == {"record", "rule", "severity", "message", "bound", "value"} and v["record"] == 1
    assert v["value"] == 40.2 and v["bound"] < 40.2  # the number judged and the limit it broke
    assert v["severity"] == "impossible" and "costs 2 points" in v["message"]
    assert main(["check-benchmarks", str(f)]) == 1
    text = capsys.readouterr().out
    assert "1 impossible" in text and "[impossible] decode_bound" in text


def test_cli_schema_failure_exits_non_zero_with_one_line(tmp_path, capsys):
    f = tmp_path / "benchmarks.json"
    f.write_text(json.dumps([qwen(peak_mem_bytes=-5)]))
    assert main(["check-benchmarks", str(f), "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert "record 0, field 'peak_mem_bytes'" in err and "\n" not in err
    f.write_text("[{")
    assert main(["check-benchmarks", str(f)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["check-benchmarks", str(tmp_path / "missing.json")]) == 2


def test_cli_unknown_hardware_lists_the_profiles(capsys):
    assert main(["check-benchmarks", str(DATA / "spark_honest.json"), "--hardware", "tpu"]) == 2
    assert "dgx-spark" in capsys.readouterr().err


def test_roofline_figure_is_a_png(tmp_path):
    records = [*json.loads((DATA / "spark_honest.json").read_text()), mamba()]
    path = roofline_figure(records, "dgx-spark", tmp_path / "roofline.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


PUBLISHED_CONFIGS = json.loads((Path(__file__).parent / "data" / "published" / "configs.json").read_text())


def published(name: str, **over: Any) -> dict[str, Any]:
    """A record of a published model with its config (counts from the config, so params_match_model is quiet)."""
    cfg = PUBLISHED_CONFIGS[name]
    (probe,) = parse_records([qwen(model=name, config=cfg, architecture="transformer")])
    ref = resolve_shape(probe)
    arch = "moe" if "num_local_experts" in cfg or "num_experts" in cfg else "transformer"
    rec = qwen(model=name, config=cfg, architecture=arch, params_total=ref.reference_total,
               params_active=ref.reference_active, peak_mem_bytes=int(workload(probe, ref).weight_bytes * 1.1) + 7)
    return {**rec, **over}


def test_speculative_decoding_raises_the_decode_bound_by_the_draft_length_not_for_ever():
    base = check_benchmarks([qwen(decode_tok_s=13.1)], "dgx-spark")
    assert not base
    (bound,) = [v.bound for v in check_benchmarks([qwen(decode_tok_s=100.3)], "dgx-spark")]
    per_step = bound / 1.15  # the bound without our margin
    spec = "speculative decoding with a 0.6B draft"
    # 28x the roofline with "speculative decoding" in the notes was only suspicious; it is impossible now
    assert rules([qwen(decode_tok_s=28 * per_step, notes=spec)])["decode_bound"] == "impossible"
    # a stated draft length bounds it: 4 drafts accept at most 5 tokens per verification step
    assert "decode_bound" not in rules([qwen(decode_tok_s=3.3 * per_step, notes=spec, draft_tokens=4)])
    (v,) = check_benchmarks([qwen(decode_tok_s=6.1 * per_step, notes=spec, draft_tokens=4)], "dgx-spark")
    assert v.severity == "impossible" and "4 draft tokens" in v.message and "at most 5 tokens" in v.message


def test_gpt_j_two_matrix_mlp_is_counted_honestly():
    rec = published("EleutherAI/gpt-j-6b", dtype="fp16", params_total=6_053_381_344, params_active=6_053_381_344)
    shape = resolve_shape(parse_records([rec])[0])
    assert shape.reference_total == pytest.approx(6.05e9, rel=0.01)
    assert "params_match_model" not in rules([rec], "a100-80gb")


def test_a_batch_of_moe_sequences_reads_the_distinct_experts_it_touches():
    one = published("openai/gpt-oss-20b", dtype="mxfp4", batch_size=1)
    many = published("openai/gpt-oss-20b", dtype="mxfp4", batch_size=32)
    w1 = workload(parse_records([one])[0], resolve_shape(parse_records([one])[0]))
    w32 = workload(parse_records([many])[0], resolve_shape(parse_records([many])[0]))
    expert = 3 * 2880 * 2880 * 0.5  # one gated expert of one layer at 4 bits
    extra = 24 * (32 * (1 - (1 - 4 / 32) ** 32) - 4) * expert * 0.8  # MOE_ROUTING_SKEW
    kv = kv_cache_bytes(resolve_shape(parse_records([one])[0]).config, 512, 31, 1)  # 31 more caches (1-byte floor)
    assert w32.read_bytes_per_step - w1.read_bytes_per_step == pytest.approx(extra + kv, rel=1e-6)
    # per sequence at batch 32, 40 tok/s on an H100 passed with one token's experts; the batch reads ~all 32
    per_seq = 3350e9 / w32.read_bytes_per_step
    assert rules([{**many, "decode_tok_s": 1.5 * per_seq}], "h100-sxm")["decode_bound"] == "impossible"
    assert "decode_bound" not in rules([{**many, "decode_tok_s": 0.7 * per_seq}], "h100-sxm")


def test_gpt_oss_alternates_windowed_and_full_layers_in_its_kv_cache():
    rec = published("openai/gpt-oss-20b", dtype="mxfp4", context_len=32768, new_tokens=1, decode_tok_s=None)
    (r,) = parse_records([rec])
    w = workload(r, resolve_shape(r))
    assert w.cache_bytes_end == (12 * 128 + 12 * 32769) * 2 * 8 * 64 * 1  # quantised weights: 1-byte floor


def test_rtx_4090_prefill_may_use_fp16_accumulate():
    # Llama-3.1-8B, 4096-token prompt: ~67 TFLOP; at 250 TFLOP/s (under the 330 FP16-accumulate peak) 0.27 s
    rec = published("meta-llama/Llama-3.1-8B", dtype="fp16", context_len=4096, new_tokens=1, decode_tok_s=None)
    (r,) = parse_records([rec])
    flops = workload(r, resolve_shape(r)).prefill_flops
    assert "ttft_bound" not in rules([{**rec, "ttft_s": flops / 250e12}], "rtx-4090")
    assert rules([{**rec, "ttft_s": flops / 420e12}], "rtx-4090")["ttft_bound"] == "impossible"


def test_gpt_oss_120b_keeps_its_non_expert_weights_unquantised():
    rec = published("openai/gpt-oss-120b", dtype="mxfp4")
    (r,) = parse_records([rec])
    w = workload(r, resolve_shape(r))
    # 3.6 B expert parameters at 4 bits and 1.5 B kept ones at >= 8 bits: ~3.3 GB, not the 2.6 GB of all-4-bit
    assert 3.2e9 < w.read_bytes_per_step < 3.5e9
    bound = 273e9 / w.read_bytes_per_step  # ~81 tok/s on the Spark (llama.cpp measures 59)
    assert rules([{**rec, "decode_tok_s": 1.5 * bound}])["decode_bound"] == "impossible"
    assert "decode_bound" not in rules([{**rec, "decode_tok_s": 0.8 * bound}])
