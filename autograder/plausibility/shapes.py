"""What a record's model is (catalogue, config or the record's own counts) and the work one run of it does."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from autograder.plausibility.margins import MOE_ROUTING_SKEW
from autograder.plausibility.schema import BenchmarkRecord, InferenceRecord, TrainRecord
from reference.catalogue import ModelEntry, lookup
from reference.memory import (
    ParamCounts,
    dtype_bytes,
    estimate_params,
    kv_cache_bytes,
    mamba_state_bytes,
    prefill_flops,
    routed_expert_params_read,
    unquantised_params_read,
)
from reference.model_config import num_layers

# Bytes per parameter of the weights a quantised checkpoint leaves unquantised. The checkpoint keeps them in bf16,
# but a runtime may requantise them to 8 bits (llama.cpp's gpt-oss GGUF is 59.02 GiB for 116.83 B parameters, less
# than MXFP4 experts plus bf16 attention would take): a floor on the bytes takes 8 bits.
UNQUANTISED_BYTES = 1

MAX_CONFIG_LAYERS = 4096  # beyond any real model; also keeps a hostile config from looping for ever


@dataclass(frozen=True)
class Shape:
    """What we know of a record's model: a config (or None) and parameter counts to judge with."""

    config: Mapping[str, Any] | None
    params: ParamCounts
    source: Literal["catalogue", "config", "record"]
    entry: ModelEntry | None = None
    reference_total: int | None = None  # the catalogue's or config's count, to compare the claim with
    reference_active: int | None = None

    @property
    def known(self) -> bool:
        return self.source != "record"


def _full_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """A to_diff_dict() completed with the defaults of its transformers config class (raw dict if that fails)."""
    mtype = config.get("model_type")
    if not isinstance(mtype, str):
        return config
    try:
        from transformers import AutoConfig

        kwargs = {k: v for k, v in config.items() if k != "model_type"}
        full: Mapping[str, Any] = AutoConfig.for_model(mtype, **kwargs).to_dict()
        return full
    except Exception:  # unknown model type or values transformers rejects: judge with what is there
        return config


def resolve_shape(record: BenchmarkRecord) -> Shape:
    entry = lookup(record.model)
    if entry is not None:
        est = entry.estimated
        params = ParamCounts(entry.total, entry.active, est.embedding, est.lm_head, est.tied)
        return Shape(entry.config, params, "catalogue", entry, entry.total, entry.active)
    if record.config:
        cfg = _full_config(record.config)
        counted: ParamCounts | None
        try:
            if not 0 < num_layers(cfg) <= MAX_CONFIG_LAYERS:
                raise ValueError("layers")
            counted = estimate_params(cfg)
        except (KeyError, ValueError, TypeError, ZeroDivisionError, OverflowError):
            counted = None
        if counted is not None and counted.total > 0:
            # The config is the student's too: judge with the smaller count, so an error can only loosen a bound.
            total = min(record.params_total, counted.total)
            active = min(record.params_active, counted.active)
            embedding = min(counted.embedding, active // 4)  # never let the embedding eat the whole active count
            lm_head = min(counted.lm_head, active // 4)
            params = ParamCounts(total, active, embedding, lm_head, counted.tied)
            return Shape(cfg, params, "config", None, counted.total, counted.active)
    params = ParamCounts(record.params_total, record.params_active, 0, 0, True)
    return Shape(None, params, "record")


@dataclass(frozen=True)
class Workload:
    """The traffic and arithmetic of one inference record (used by the bounds and by the roofline figure)."""

    weight_bytes: float  # bytes of weights resident on the device
    read_bytes_per_step: float  # weights + cache one decode step must read (all sequences)
    decode_flops_per_token: float
    prefill_flops: float
    prefill_read_bytes: float
    cache_bytes_end: float  # KV cache / SSM state at the end of the run
    cache_label: str


def workload(record: InferenceRecord | TrainRecord, shape: Shape) -> Workload:
    wb = dtype_bytes(record.dtype)
    kv_b = wb if wb >= 2 else 1  # quantised weights usually keep a bf16 cache; 1 byte keeps the floor safe
    cfg, p, b = shape.config, shape.params, record.batch_size
    new = getattr(record, "new_tokens", 0)
    if cfg is not None:
        kv_now = kv_cache_bytes(cfg, record.context_len, b, kv_b)
        kv_end = kv_cache_bytes(cfg, record.context_len + new, b, kv_b)
        state = mamba_state_bytes(cfg, b, wb)
        flops = prefill_flops(cfg, p, record.context_len, b)
    else:
        kv_now = kv_end = state = 0
        flops = 2.0 * p.matmul_active * record.context_len * b
    parts = []
    if kv_end:
        parts.append("KV cache")
    if state:
        parts.append("SSM state")
    label = " and ".join(parts) if parts else ("cache (not counted: model shape unknown)" if cfg is None else "cache")
    read_weights = p.read_per_token * wb
    prefill_weights = read_weights
    weight_bytes = p.total * wb
    if cfg is not None:
        # A batch routes its sequences to different experts: one step reads every distinct expert once, E (1 -
        # (1 - k/E)^b) of them per layer instead of k; a prefill of b * L tokens touches nearly all of them.
        one = routed_expert_params_read(cfg, 1)
        read_weights += (routed_expert_params_read(cfg, b) - one) * wb * MOE_ROUTING_SKEW
        prefill_weights += (routed_expert_params_read(cfg, b * record.context_len) - one) * wb * MOE_ROUTING_SKEW
        if wb < UNQUANTISED_BYTES:
            # A quantised checkpoint keeps what its quantization_config names (gpt-oss: attention, router,
            # embeddings, lm_head) unquantised: at least 8 bits.
            kept = unquantised_params_read(cfg) * (UNQUANTISED_BYTES - wb)
            read_weights += kept
            prefill_weights += kept
            weight_bytes += kept
    return Workload(
        weight_bytes=weight_bytes,
        read_bytes_per_step=read_weights + kv_now + state,
        decode_flops_per_token=2.0 * p.matmul_active,
        prefill_flops=flops,
        prefill_read_bytes=prefill_weights,
        cache_bytes_end=kv_end + state,
        cache_label=label,
    )

