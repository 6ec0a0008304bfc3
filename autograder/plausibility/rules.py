"""Per-record physics: each rule judges one record against the device's limits and the model's shape."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from autograder.plausibility.margins import (
    DECODE_MARGIN,
    DEFAULT_DRAFT_TOKENS,
    DENSE_ACTIVE_MIN,
    ESTIMATED_PEAK_SLACK,
    EXACT_DIGITS,
    LORA_MAX_TRAINABLE_SHARE,
    LOSS_START_FACTOR,
    MEMORY_CEILING_MARGIN,
    MEMORY_FLOOR_MARGIN,
    PARAMS_TOLERANCE,
    PPL_ABOVE_PUBLISHED,
    PPL_BELOW_PUBLISHED,
    RANDOM_PPL_MAX_SHARE,
    RANDOM_PPL_MIN_SHARE,
    SUSPICIOUS_BANDWIDTH_FRACTION,
    SUSPICIOUS_FLOPS_FRACTION,
    TRAIN_FLOPS_PER_PARAM,
    TRAINED_PPL_MAX_SHARE,
    TTFT_MARGIN,
    TTFT_VS_DECODE_FACTOR,
    UNKNOWN_SHAPE_SLACK,
)
from autograder.plausibility.schema import BenchmarkRecord, InferenceRecord, TrainRecord, Verdict
from autograder.plausibility.shapes import Shape, Workload
from autograder.plausibility.text import _bytes, _is_round_bytes, _label, _num, _secs, _sig_digits, _unit_hint
from reference.hardware import HardwareProfile
from reference.memory import dtype_bytes
from reference.model_config import field as config_field

# What each judged field means, quoted in the verdict that a number breaks (and on the feedback page).
DECODE_DEFINITION = ("decode_tok_s is new tokens per second of ONE sequence after its first token: (new_tokens - 1) "
                     "/ seconds from the first to the last new token; a batch makes batch_size times as many.")
TTFT_DEFINITION = ("ttft_s is the seconds from the call to the first new token: the whole batch's prompts "
                   "prefilled, then one step.")
MEMORY_DEFINITION = ("peak_mem_bytes is torch.cuda.max_memory_allocated() read after the run, with the peak reset "
                     "before it and nothing subtracted: the weights are part of it.")


def _peak(profile: HardwareProfile, wb: float, *, ceiling: bool) -> float:
    """Peak FLOP/s; for 'impossible' judgements an estimated peak gets ESTIMATED_PEAK_SLACK."""
    slack = ESTIMATED_PEAK_SLACK if ceiling and profile.flops_estimated else 1.0
    # A ceiling takes the fastest accumulation the device offers (FP16 on GeForce cards, which llama.cpp uses).
    return profile.peak_flops(wb, fp16_accumulate=ceiling) * slack


def _check_params(i: int, r: BenchmarkRecord, shape: Shape) -> list[Verdict]:
    out: list[Verdict] = []
    label = _label(i, r)
    if r.params_active > r.params_total:
        out.append(Verdict(i, "params_active_le_total", "impossible",
            f"{label}: {r.params_active:,} active parameters is more than the {r.params_total:,} the model has "
            f"({r.params_active / r.params_total:.2f}x). Active parameters are the subset one token uses, so "
            "they can be at most the total.", r.params_total, r.params_active))
    elif r.architecture in ("transformer", "mamba") and r.params_active < DENSE_ACTIVE_MIN * r.params_total:
        out.append(Verdict(i, "dense_params_active", "suspicious",
            f"{label}: a dense {r.architecture} uses every parameter for every token, but the record says "
            f"{r.params_active:,} active of {r.params_total:,} ({r.params_active / r.params_total:.0%}); "
            f"expected at least {DENSE_ACTIVE_MIN:.0%}.", r.params_total, r.params_active))
    if shape.entry is not None and shape.entry.architecture != r.architecture:
        out.append(Verdict(i, "architecture_match", "suspicious",
            f"{label}: {shape.entry.name} is a {shape.entry.architecture} model, but the record says "
            f"'{r.architecture}'.", None, None))
    if shape.reference_total:
        src = "the catalogue" if shape.source == "catalogue" else "its config"
        for what, claimed, ref in (("total", r.params_total, shape.reference_total),
                                   ("active", r.params_active, shape.reference_active)):
            if ref and abs(claimed - ref) > PARAMS_TOLERANCE * ref:
                out.append(Verdict(i, "params_match_model", "suspicious",
                    f"{label}: params_{what} {claimed:,} differs from the {ref:,} that {src} gives for this "
                    f"model by {abs(claimed - ref) / ref:.0%} (tolerance {PARAMS_TOLERANCE:.0%}). Count with "
                    "sum(p.numel() for p in model.parameters()).", ref, claimed))
    return out


SPECULATIVE_WORDS = ("speculative", "assisted", "draft model", "medusa", "lookahead", "eagle")


def draft_tokens(r: InferenceRecord) -> int | None:
    """Draft tokens per verification step a record may claim: its stated ``draft_tokens``, else
    DEFAULT_DRAFT_TOKENS when its notes declare speculative decoding, else None (no speculation)."""
    if r.draft_tokens is not None:
        return r.draft_tokens
    return DEFAULT_DRAFT_TOKENS if r.declares(*SPECULATIVE_WORDS) else None


@dataclass(frozen=True)
class Limit:
    """A physical limit of one record: the bound (tok/s for decode, seconds for TTFT), why, and which side binds."""

    bound: float
    why: str
    memory_bound: bool


def decode_limit(r: InferenceRecord, shape: Shape, w: Workload, hw: HardwareProfile) -> Limit:
    """The most decode tokens per second ONE sequence can make on ``hw`` (before our margin)."""
    wb = dtype_bytes(r.dtype)
    # decode_tok_s is per sequence: one step makes one token of each sequence and reads the weights once and every
    # sequence's cache (read_bytes_per_step), and does the FLOPs of all of them.
    bw_bound = hw.bandwidth_bytes_s / w.read_bytes_per_step
    compute_bound = _peak(hw, wb, ceiling=True) / max(w.decode_flops_per_token * r.batch_size, 1.0)
    bound = min(bw_bound, compute_bound)
    if not shape.known:
        bound *= UNKNOWN_SHAPE_SLACK
    drafts = draft_tokens(r)
    if drafts is not None:
        # A verification step reads the weights once and accepts at most every draft token plus the one it
        # computes itself: speculation multiplies the bound by at most 1 + drafts. It never removes it.
        bound *= 1 + drafts
    if bw_bound <= compute_bound:
        why = (f"every decode step reads {_bytes(w.read_bytes_per_step)} (the active weights"
               f"{' and ' + w.cache_label if w.cache_label and 'unknown' not in w.cache_label else ''}"
               f"{', for ' + str(r.batch_size) + ' sequences' if r.batch_size > 1 else ''}) and makes one token "
               f"per sequence, and {hw.display_name} moves at most {_bytes(hw.bandwidth_bytes_s)}/s")
    else:
        why = (f"every step costs {_num(w.decode_flops_per_token * r.batch_size / 1e9)} GFLOP "
               f"({r.batch_size} sequence{'s' * (r.batch_size > 1)}) and {hw.display_name} peaks at "
               f"{_num(_peak(hw, wb, ceiling=True) / 1e12)} TFLOP/s")
    if drafts is not None:
        why += (f"; speculative decoding with {drafts} draft tokens accepts at most {drafts + 1} tokens per "
                "verification step")
    return Limit(bound, why, bw_bound <= compute_bound)


def ttft_limit(r: InferenceRecord, shape: Shape, w: Workload, hw: HardwareProfile) -> Limit:
    """The shortest time to first token on ``hw``: the whole batch's prompts prefilled (before our margin)."""
    wb = dtype_bytes(r.dtype)
    t_compute = w.prefill_flops / _peak(hw, wb, ceiling=True)
    t_memory = w.prefill_read_bytes / hw.bandwidth_bytes_s
    t_min = max(t_compute, t_memory)
    if not shape.known:
        t_min /= UNKNOWN_SHAPE_SLACK
    if t_compute >= t_memory:
        why = (f"the prompt{'s' * (r.batch_size > 1)} need at least {_num(w.prefill_flops / 1e12)} TFLOP "
               f"and {hw.display_name} peaks at {_num(_peak(hw, wb, ceiling=True) / 1e12)} TFLOP/s"
               f"{' (twice our estimate of its peak)' if hw.flops_estimated else ''}")
    else:
        why = (f"the first token needs every weight the prefill touches read once ({_bytes(w.prefill_read_bytes)})"
               f" at {_bytes(hw.bandwidth_bytes_s)}/s")
    return Limit(t_min, why, t_compute < t_memory)


def _check_decode(i: int, r: InferenceRecord, shape: Shape, w: Workload, hw: HardwareProfile) -> list[Verdict]:
    v = r.decode_tok_s
    if v is None:
        return []
    lim = decode_limit(r, shape, w, hw)
    bound, why = lim.bound, lim.why
    limit = bound * DECODE_MARGIN
    if v > limit:
        return [Verdict(i, "decode_bound", "impossible",
            f"{_label(i, r)}: decode speed {_num(v)} tok/s is impossible: {why}, which allows at most "
            f"{_num(bound)} tok/s ({_num(limit)} with our {DECODE_MARGIN - 1:.0%} margin); yours is "
            f"{v / bound:.2f}x that. {DECODE_DEFINITION} Usual causes: timing without torch.cuda.synchronize(), "
            "counting prompt tokens or the whole batch's tokens, or an undeclared technique (write 'speculative "
            "decoding' in notes and its draft_tokens if you used one).", limit, v)]
    if v > bound * SUSPICIOUS_BANDWIDTH_FRACTION:
        return [Verdict(i, "decode_bound", "suspicious",
            f"{_label(i, r)}: decode speed {_num(v)} tok/s is {v / bound:.0%} of the physical limit {_num(bound)} "
            f"tok/s ({why}); measured decoding reaches 60-90 % of it. Check the timing.", bound, v)]
    return []


def _check_ttft(i: int, r: InferenceRecord, shape: Shape, w: Workload, hw: HardwareProfile) -> list[Verdict]:
    if r.declares("prompt cach", "prefix cach", "prompt-cach", "prefix-cach", "cached prompt"):
        return []
    wb = dtype_bytes(r.dtype)
    lim = ttft_limit(r, shape, w, hw)
    t_min, why = lim.bound, lim.why
    floor = t_min / TTFT_MARGIN
    if r.ttft_s < floor:
        return [Verdict(i, "ttft_bound", "impossible",
            f"{_label(i, r)}: time to first token {_secs(r.ttft_s)} is impossible: {why}, so it takes at least "
            f"{_secs(t_min)} ({_secs(floor)} with our {TTFT_MARGIN - 1:.0%} margin); yours is "
            f"{t_min / r.ttft_s:.2f}x faster than that. {TTFT_DEFINITION} Usual causes: no "
            "torch.cuda.synchronize() before reading the clock, timing one sequence of a batch, or a prompt cache "
            "left warm (write 'prompt caching' in notes if intended).", floor, r.ttft_s)]
    peak = hw.peak_flops(wb, fp16_accumulate=True)
    nominal = w.prefill_flops / (peak * SUSPICIOUS_FLOPS_FRACTION)
    if not lim.memory_bound and r.ttft_s < nominal:
        achieved = w.prefill_flops / r.ttft_s
        return [Verdict(i, "ttft_bound", "suspicious",
            f"{_label(i, r)}: time to first token {_secs(r.ttft_s)} means {_num(achieved / 1e12)} TFLOP/s of "
            f"prefill, {achieved / peak:.0%} of {hw.display_name}'s peak {_num(peak / 1e12)} TFLOP/s; real "
            f"prefill rarely passes {SUSPICIOUS_FLOPS_FRACTION:.0%}.", nominal, r.ttft_s)]
    return []


def _check_memory(i: int, r: BenchmarkRecord, w: Workload, hw: HardwareProfile) -> list[Verdict]:
    peak = r.peak_mem_bytes if isinstance(r, InferenceRecord) else r.train_peak_mem_bytes
    rule = "memory" if isinstance(r, InferenceRecord) else "train_memory"
    label = _label(i, r)
    need = w.weight_bytes + w.cache_bytes_end
    what = f"the weights ({_bytes(w.weight_bytes)})"
    if isinstance(r, TrainRecord):
        grads = r.params_trainable * dtype_bytes(r.dtype)
        need = w.weight_bytes + grads
        what += f" and the gradients of the trainable parameters ({_bytes(grads)})"
    elif w.cache_bytes_end:
        what += f" and the {w.cache_label} ({_bytes(w.cache_bytes_end)})"
    ceiling = hw.usable_memory_bytes
    out: list[Verdict] = []
    floor = need * MEMORY_FLOOR_MARGIN
    if peak < floor and not r.declares("offload"):
        out.append(Verdict(i, f"{rule}_floor", "impossible",
            f"{label}: peak memory {_bytes(peak)} is impossible: {what} alone take {_bytes(need)} "
            f"({_bytes(floor)} with our {1 - MEMORY_FLOOR_MARGIN:.0%} margin); yours is {peak / need:.0%} of that."
            + (_unit_hint(peak, need, ceiling) or f" {MEMORY_DEFINITION}"), floor, peak))
    limit = ceiling * MEMORY_CEILING_MARGIN
    if peak > limit:
        out.append(Verdict(i, f"{rule}_ceiling", "impossible",
            f"{label}: peak memory {_bytes(peak)} is more than {hw.display_name} has ({_bytes(ceiling)}"
            f"{' visible to CUDA' if hw.cuda_visible_bytes else ''}): {peak / ceiling:.2f}x the device. "
            "Was this run on another machine (pass --hardware), or is the unit wrong?", limit, peak))
    return out


def _vocab(shape: Shape) -> int | None:
    if shape.config is None:
        return None
    v = config_field(shape.config, "vocab_size", default=None)
    return int(v) if isinstance(v, int | float) and v > 1 else None


def _check_perplexity(i: int, r: BenchmarkRecord, shape: Shape) -> list[Verdict]:
    ppl = r.perplexity
    if ppl is None:
        return []
    label = _label(i, r)
    if ppl < 1:
        return [Verdict(i, "perplexity_range", "impossible",
            f"{label}: perplexity {_num(ppl)} is below 1, which is impossible: perplexity is exp(mean "
            "cross-entropy) and cross-entropy is never negative. Did you report the loss, or exp(-loss)?",
            1.0, ppl)]
    vocab = _vocab(shape)
    published = shape.entry.pile_perplexity if shape.entry is not None else None
    if r.weights == "random" and vocab:
        lo, hi = RANDOM_PPL_MIN_SHARE * vocab, RANDOM_PPL_MAX_SHARE * vocab
        if not lo <= ppl <= hi:
            return [Verdict(i, "perplexity_range", "suspicious",
                f"{label}: a model with random weights sits near its vocabulary size ({vocab:,}); perplexity "
                f"{_num(ppl)} is {ppl / vocab:.2f}x that (expected {RANDOM_PPL_MIN_SHARE}-{RANDOM_PPL_MAX_SHARE}x).",
                lo if ppl < lo else hi, ppl)]
        return []
    if vocab and ppl > TRAINED_PPL_MAX_SHARE * vocab:
        return [Verdict(i, "perplexity_range", "suspicious",
            f"{label}: perplexity {_num(ppl)} is worse than guessing uniformly over the {vocab:,}-token "
            "vocabulary; a trained model does far better. Check the label shift and the mask.",
            float(vocab), ppl)]
    if published is not None and r.weights == "pretrained":
        lo, hi = published * PPL_BELOW_PUBLISHED, published * PPL_ABOVE_PUBLISHED
        if not lo <= ppl <= hi:
            return [Verdict(i, "perplexity_range", "suspicious",
                f"{label}: perplexity {_num(ppl)} is {ppl / published:.2f}x the published {_num(published)} "
                f"(Pile validation) for {shape.entry.name if shape.entry else r.model}; other corpora differ, "
                f"but not by this much (expected {PPL_BELOW_PUBLISHED}-{PPL_ABOVE_PUBLISHED:g}x).",
                lo if ppl < lo else hi, ppl)]
    return []


def _check_ttft_vs_decode(i: int, r: InferenceRecord) -> list[Verdict]:
    if r.decode_tok_s is None:
        return []
    serial = r.context_len / r.decode_tok_s  # the prompt fed one token a step (all sequences in each step)
    limit = TTFT_VS_DECODE_FACTOR * serial + 1.0  # +1 s: start-up latency of a small prompt
    if r.ttft_s > limit:
        hint = " It looks like milliseconds: ttft_s is in seconds." if r.ttft_s / 1000 <= limit else ""
        return [Verdict(i, "ttft_vs_decode", "suspicious",
            f"{_label(i, r)}: time to first token {_secs(r.ttft_s)} is longer than feeding the "
            f"{r.context_len}-token prompt one token at a time at your own decode speed ({_secs(serial)}), "
            f"{r.ttft_s / serial:.1f}x; prefill processes the prompt in parallel and is faster.{hint}",
            limit, r.ttft_s)]
    return []


def _check_repeats(i: int, r: InferenceRecord) -> list[Verdict]:
    out: list[Verdict] = []
    if r.repeats is None:
        return out
    for name in ("decode_tok_s", "ttft_s"):
        values = getattr(r.repeats, name)
        reported = getattr(r, name)
        if not values:
            continue
        if len(values) >= 3 and len(set(values)) == 1 and _sig_digits(values[0]) >= EXACT_DIGITS:
            out.append(Verdict(i, "zero_variance_repeats", "suspicious",
                f"{_label(i, r)}: all {len(values)} repeats of {name} are exactly {values[0]!r}; timings to "
                f"{_sig_digits(values[0])} significant digits always vary from run to run.", 0.0, 0.0))
        if reported is not None:
            lo, hi = min(values), max(values)
            if not lo * 0.99 <= reported <= hi * 1.01:
                out.append(Verdict(i, "repeats_disagree", "suspicious",
                    f"{_label(i, r)}: the reported {name} {_num(reported)} lies outside its own repeats "
                    f"({_num(lo)} to {_num(hi)}); report their median.", hi if reported > hi else lo,
                    reported))
    return out


def _check_round_bytes(i: int, r: BenchmarkRecord) -> list[Verdict]:
    peak = r.peak_mem_bytes if isinstance(r, InferenceRecord) else r.train_peak_mem_bytes
    if _is_round_bytes(peak):
        return [Verdict(i, "round_numbers", "suspicious",
            f"{_label(i, r)}: peak memory {peak:,} bytes is a round number; a measured peak (allocator or "
            "RSS) almost never is. Record the measured value, not a conversion from GB.", None, peak)]
    return []


def _check_train(i: int, r: TrainRecord, shape: Shape, w: Workload, hw: HardwareProfile) -> list[Verdict]:
    out: list[Verdict] = []
    label = _label(i, r)
    if r.params_trainable > r.params_total:
        out.append(Verdict(i, "train_trainable_le_total", "impossible",
            f"{label}: {r.params_trainable:,} trainable parameters is more than the {r.params_total:,} the "
            f"model has ({r.params_trainable / r.params_total:.2f}x).", r.params_total,
            r.params_trainable))
    elif r.method in ("lora", "qlora") and r.params_trainable > LORA_MAX_TRAINABLE_SHARE * r.params_total:
        out.append(Verdict(i, "train_lora_fraction", "suspicious",
            f"{label}: LoRA trains small adapters, but {r.params_trainable / r.params_total:.0%} of the "
            f"parameters are trainable (more than {LORA_MAX_TRAINABLE_SHARE:.0%}). Were the base weights "
            "frozen?", LORA_MAX_TRAINABLE_SHARE * r.params_total, r.params_trainable))
    losses = r.losses
    if any(x < 0 for x in losses if math.isfinite(x)):
        worst = min(x for x in losses if math.isfinite(x))
        out.append(Verdict(i, "train_loss_range", "impossible",
            f"{label}: a training loss of {_num(worst)} is impossible: cross-entropy is never negative.",
            0.0, worst))
    if any(not math.isfinite(x) for x in losses):
        out.append(Verdict(i, "train_loss_range", "suspicious",
            f"{label}: the loss became {next(x for x in losses if not math.isfinite(x))} (training diverged); "
            "report it, but lower the learning rate.", None, None))
    vocab = _vocab(shape)
    first = losses[0]
    if vocab and math.isfinite(first):
        ceiling = LOSS_START_FACTOR * math.log(vocab) + 1.0
        if first > ceiling:
            out.append(Verdict(i, "train_loss_range", "suspicious",
                f"{label}: the first loss {_num(first)} is above {_num(ceiling)} nats, worse than a random "
                f"model (ln {vocab:,} = {math.log(vocab):.2f}). Is it summed instead of averaged over tokens?",
                ceiling, first))
    finite = [x for x in losses if math.isfinite(x)]
    run, run_value = _longest_run(finite) if finite else (0, 0.0)
    if run >= 3 and _sig_digits(run_value) >= EXACT_DIGITS:
        out.append(Verdict(i, "train_loss_zero_variance", "suspicious",
            f"{label}: {run} consecutive logged losses are exactly equal; minibatch losses always vary.",
            0.0, 0.0))
    if r.train_tok_s is not None:
        wb = dtype_bytes(r.dtype)
        per_param = TRAIN_FLOPS_PER_PARAM.get(r.method or "lora", 4.0)
        compute = _peak(hw, wb, ceiling=True) / (per_param * max(shape.params.matmul_active, 1))
        tokens_per_step = r.batch_size * r.context_len
        memory = tokens_per_step * hw.bandwidth_bytes_s / (2 * w.prefill_read_bytes)  # forward + backward read
        bound = min(compute, memory) * (1 if shape.known else UNKNOWN_SHAPE_SLACK)
        if r.train_tok_s > bound * DECODE_MARGIN:
            out.append(Verdict(i, "train_throughput_bound", "impossible",
                f"{label}: training at {_num(r.train_tok_s)} tok/s is impossible: {hw.display_name} allows at "
                f"most {_num(bound)} tok/s ({per_param:g} FLOP per parameter and token at "
                f"{_num(_peak(hw, wb, ceiling=True) / 1e12)} TFLOP/s, and the weights read twice a step); "
                f"yours is {r.train_tok_s / bound:.2f}x that.", bound * DECODE_MARGIN, r.train_tok_s))
    return out


def _longest_run(xs: Sequence[float]) -> tuple[int, float]:
    """(length, value) of the longest stretch of exactly equal consecutive values."""
    best, cur, val = 1, 1, xs[0]
    for a, b in itertools.pairwise(xs):
        cur = cur + 1 if a == b else 1
        if cur > best:
            best, val = cur, b
    return best, val

