"""The margins and thresholds of every plausibility rule, each with the reason for its size."""

from __future__ import annotations

# ---------------------------------------------------------------------------------------------------------------
# Margins. "Impossible" must never catch an honest number: each margin covers the error of our own estimate.

# tok/s may exceed bandwidth / bytes-per-token by this factor before it is impossible: parameter counts are
# +-5 %, spec-sheet bandwidth is rounded, and a small model's hottest weights may sit in L2 cache.
DECODE_MARGIN = 1.15
# Experts a batch touches beyond one token's k count at this share of the uniform-routing expectation
# E (1 - (1 - k/E)^tokens): a real router is imbalanced (load-balancing losses keep max/mean load near 1.2-1.5),
# which leaves more experts idle than uniform routing would.
MOE_ROUTING_SKEW = 0.8
# Speculative decoding declared in notes without draft_tokens: the most draft tokens one verification step may
# accept. EAGLE-style drafters propose up to ~8 (their reported acceptance lengths stay under 7), Medusa 4-5 heads,
# vLLM's and TensorRT-LLM's examples 3-7.
DEFAULT_DRAFT_TOKENS = 8
# TTFT may undercut max(prefill FLOPs / peak, weight bytes / bandwidth) by this factor: FLOP counts of norms,
# rotary and softmax are left out, and the clock's resolution matters for millisecond prefills.
TTFT_MARGIN = 1.15
# A peak FLOP/s that is our estimate (DGX Spark BF16, not published) is doubled before calling anything impossible.
ESTIMATED_PEAK_SLACK = 2.0
# Without a model shape (no catalogue entry, no config) the input-embedding share of the weights is unknown
# (up to ~15 % for small models): bounds are loosened by this factor.
UNKNOWN_SHAPE_SLACK = 1.25
# Peak memory must reach this share of weights + cache: tied embeddings, buffers and count errors.
MEMORY_FLOOR_MARGIN = 0.90
# and may exceed the device's memory by this factor (GB vs GiB rounding of the spec sheet).
MEMORY_CEILING_MARGIN = 1.02

# "Suspicious" thresholds: possible, but beyond what measurements reach.
# Measured single-stream decode reaches 60-90 % of peak bandwidth (docs/facts.md, "Hardware").
SUSPICIOUS_BANDWIDTH_FRACTION = 0.95
# Prefill rarely sustains more than ~70 % of the tensor peak (docs/facts.md, "Hardware": tens of TFLOP/s on the Spark).
SUSPICIOUS_FLOPS_FRACTION = 0.80
# TTFT longer than feeding the prompt one token at a time at the measured decode speed, times this, is a unit slip.
TTFT_VS_DECODE_FACTOR = 3.0
# Claimed parameter counts may differ from the catalogue/config count by this share (embeddings counted or not).
PARAMS_TOLERANCE = 0.15
# A dense model's active parameters should equal its total; below this share is suspicious.
DENSE_ACTIVE_MIN = 0.90
# Between a short and a long context, a transformer's peak memory must grow by at least this share of the extra
# KV cache (a static cache or a load-time peak that hides the growth is worth a look).
KV_GROWTH_MIN = 0.5
# A transformer that decodes this much faster at a longer context is suspicious (timing noise stays under it).
DECODE_SPEEDUP_NOISE = 1.15
# Mamba's decode step is the same work at any context: slowing below this share of its short-context speed is odd.
MAMBA_DECODE_MIN_RATIO = 0.7
# TTFT at a prompt at least twice as long may fall below the shorter prompt's TTFT by at most this share.
TTFT_SHRINK_NOISE = 0.8
# Perplexity: better than this share of the published (Pile) value, or worse than this multiple, is suspicious.
PPL_BELOW_PUBLISHED = 0.5
PPL_ABOVE_PUBLISHED = 10.0
# A model with random weights predicts no better than about uniform: below this share of the vocabulary is odd.
RANDOM_PPL_MIN_SHARE = 0.5
# A trained model worse than uniform guessing (perplexity > vocabulary) has a broken evaluation; random: 4x.
TRAINED_PPL_MAX_SHARE = 1.0
RANDOM_PPL_MAX_SHARE = 4.0
# Values with at least this many significant digits that repeat exactly are not coincidence.
EXACT_DIGITS = 4
# A file where this share of the measured floats have at most two significant digits reads as invented.
ROUND_SHARE = 0.6
ROUND_MIN_VALUES = 4
# Bytes that are a multiple of 10 MB or 64 MiB (chance ~1e-4 for a real allocator or RSS peak).
ROUND_BYTES = (10**7, 2**26)
# LoRA/QLoRA training more than this share of the weights is not LoRA (tiny models with high ranks reach ~30 %).
LORA_MAX_TRAINABLE_SHARE = 0.5
# First training loss above 1.5 ln(V) + 1 nats: worse than a random model; a pretrained one starts far below ln(V).
LOSS_START_FACTOR = 1.5
# Training FLOPs per token and active parameter: forward 2 + backward >= 2 (LoRA: no weight gradients), full 6.
TRAIN_FLOPS_PER_PARAM = {"lora": 4.0, "qlora": 4.0, "full": 6.0}

