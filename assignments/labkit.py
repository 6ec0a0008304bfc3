"""Helpers every lab notebook shares: profile/model loading, benchmark records, peak memory, parameter counts.

The builders inline the *source text* of these functions into each notebook's locked setup cell (``snippet``), so a
released notebook runs without this file and the two lab builders never duplicate it. Everything here runs inside
the student's kernel: it is convenience, never trusted by the grader (the hidden checks recompute what they grade).

Profiles: ``tiny`` loads local folders under MODELS_DIR (built by ``sparkgrade init``); ``spark`` loads hub ids in
bf16 on CUDA. Both go through ``load_model`` -> ``AutoModelForCausalLM.from_pretrained(model_id, dtype=dtype)``.
``SPARKGRADE_HUB_ROOT=/some/dir`` maps a hub id ``org/name`` to the local folder ``/some/dir/org/name`` (a mirror
of the checkpoints on a machine without network; the project's tests use it to exercise the spark path offline).
"""

from __future__ import annotations

import inspect
import json
import os
import threading
import time
from pathlib import Path

import torch

# Imports the inlined helpers need, written once at the top of the setup cell.
IMPORTS = """\
import json
import math
import os
import threading
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer
"""


def quiet_libraries():
    """Silence progress bars and library warnings: nbgrader counts any stderr output in a test cell as a failure."""
    import warnings

    import transformers

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


def resolve_model_id(model_id):
    """What from_pretrained gets: the local mirror of a hub id when $SPARKGRADE_HUB_ROOT is set, else the id."""
    root = os.environ.get("SPARKGRADE_HUB_ROOT")
    if root and not Path(model_id).exists():
        local = Path(root) / model_id
        if not local.is_dir():
            raise FileNotFoundError(f"{model_id!r} is not mirrored under SPARKGRADE_HUB_ROOT={root} (no {local})")
        return str(local)
    if not root and not Path(model_id).exists() and "/" not in str(model_id):
        raise FileNotFoundError(f"no model folder {model_id!r}: run `sparkgrade init` or set SPARKGRADE_MODELS")
    return str(model_id)


def load_model(model_id, dtype, device, trust_remote_code=False):
    """(model, tokenizer) for a local folder or hub id, in eval mode on ``device``: the one loader of both profiles.

    trust_remote_code: run the modelling code a checkpoint ships (DeepSeekMoE has no transformers class); only for
    the roles the course's models.yaml trusts.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_id(model_id)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code)
    return model.to(device).eval(), tokenizer


def architecture_of(config):
    """'transformer', 'mamba', 'moe' or 'hybrid' (the benchmark records' vocabulary) from an HF config."""
    cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    mtype = str(cfg.get("model_type", ""))
    has_ssm = mtype in {"mamba", "mamba2", "falcon_mamba"} or any(k.startswith("mamba_") for k in cfg)
    has_attention = cfg.get("num_attention_heads") is not None
    experts = cfg.get("num_local_experts") or cfg.get("num_experts") or cfg.get("n_routed_experts") or 0
    if has_ssm and has_attention:
        return "hybrid"
    if has_ssm:
        return "mamba"
    return "moe" if experts and experts > 1 else "transformer"


def count_params(model):
    """(total, active) parameters. Routed experts count k/E of their size as active (k chosen of E per token)."""
    cfg = model.config
    experts = getattr(cfg, "num_local_experts", None) or getattr(cfg, "num_experts", None) or 0
    experts = experts or getattr(cfg, "n_routed_experts", None) or 0
    top_k = getattr(cfg, "num_experts_per_tok", None) or 0
    total = active = 0.0
    for name, p in model.named_parameters():
        total += p.numel()
        routed = "experts" in name.split(".") and "shared" not in name
        active += p.numel() * (top_k / experts) if routed and experts else p.numel()
    return int(total), round(active)


def config_dict(config):
    """A JSON-safe dict of an HF config (only what differs from the defaults, plus the model type)."""
    d = config.to_diff_dict() if hasattr(config, "to_diff_dict") else dict(config)
    d["model_type"] = getattr(config, "model_type", d.get("model_type"))
    return json.loads(json.dumps(d, default=str))


BENCHMARK_FIELDS = (
    "model", "architecture", "params_total", "params_active", "dtype", "batch_size", "context_len", "new_tokens",
    "ttft_s", "decode_tok_s", "peak_mem_bytes", "device",
)


def record_benchmark(path="benchmarks.json", **fields):
    """Append one measured configuration to benchmarks.json beside the notebook and return the record.

    What the judged numbers mean (the grader holds each against the device's limits with these definitions):
      ttft_s          seconds from the generate call to the first new token: every prompt of the batch prefilled,
                      then one decode step; no prompt cache left warm.
      decode_tok_s    new tokens per second of ONE sequence after its first token: (new_tokens - 1) / seconds
                      from the first to the last new token. A batch makes batch_size times as many tokens in all;
                      do not multiply by the batch size.
      peak_mem_bytes  torch.cuda.max_memory_allocated() after the run, with torch.cuda.reset_peak_memory_stats()
                      before it and nothing subtracted: the weights are part of it (CPU: the peak RSS).

    Required: the fields of BENCHMARK_FIELDS; optional: perplexity, repeats (per-repeat decode tok/s), config (the
    model's HF config; a config object is turned into a dict), notes. A record with the same configuration (model,
    dtype, device, batch_size, context_len, new_tokens) replaces the older one, so rerunning a cell never duplicates.
    """
    missing = [f for f in BENCHMARK_FIELDS if f not in fields]
    if missing:
        raise ValueError(f"record_benchmark is missing {', '.join(missing)}")
    if fields["architecture"] not in {"transformer", "mamba", "moe", "hybrid"}:
        raise ValueError(f"architecture must be transformer, mamba, moe or hybrid, not {fields['architecture']!r}")
    record = dict(fields)
    if record.get("config") is not None and not isinstance(record["config"], dict):
        record["config"] = config_dict(record["config"])
    record["dtype"] = str(record["dtype"]).removeprefix("torch.")
    record["device"] = str(record["device"])
    key_fields = ("model", "dtype", "device", "batch_size", "context_len", "new_tokens")
    path = Path(path)
    records = json.loads(path.read_text()) if path.exists() else []
    records = [r for r in records if any(r.get(k) != record[k] for k in key_fields)]
    records.append(json.loads(json.dumps(record, default=float)))
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(records, indent=1))
    tmp.replace(path)
    return record


def cache_nbytes(cache):
    """Bytes held by a transformers Cache (KV tensors of attention layers, conv + SSM states of Mamba layers)."""
    total = 0
    for layer in getattr(cache, "layers", []):
        for value in vars(layer).values():
            tensors = value.values() if isinstance(value, dict) else [value]
            total += sum(t.numel() * t.element_size() for t in tensors if torch.is_tensor(t))
    return total


def output_cache(output):
    """The cache a forward pass returned (transformers 5: .cache; 4.x: .past_key_values or Mamba's .cache_params)."""
    for name in ("cache", "past_key_values", "cache_params"):
        value = getattr(output, name, None)
        if value is not None:
            return value
    raise ValueError("the model returned no cache: call it with use_cache=True")


def _rss_bytes():
    """Resident set size of this process from /proc (Linux); None elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class PeakMemory:
    """Peak memory while the block runs, in ``.peak_bytes``.

    CUDA: torch.cuda.max_memory_allocated after reset_peak_memory_stats (weights + cache + activations; what
    the grader's plausibility rules expect, and the only measure that works on the Spark's unified memory).
    CPU: the peak resident set size of the process, sampled every millisecond by a thread. It includes the weights,
    the cache and the activations, plus the Python/torch runtime itself (a few hundred MB), so on CPU it is an upper
    bound of the same quantity. tracemalloc would miss torch's allocations, and ru_maxrss cannot be reset.
    """

    def __init__(self, device):
        self.device = torch.device(device)
        self.peak_bytes = 0
        self._stop = threading.Event()

    def _sample(self):
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, _rss_bytes() or 0)
            self._stop.wait(0.001)

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.peak_bytes = _rss_bytes() or 0
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            self.peak_bytes = max(self.peak_bytes, _rss_bytes() or 0)
        return False


def measure_generation(model, input_ids, new_tokens):
    """dict(ttft_s, decode_tok_s, peak_mem_bytes) of greedy generation (the lab 2.4.1 method, provided in 2.4.5).

    Warm-up first; CUDA is synchronised around every clock reading. TTFT = prefill + the first new token; decode
    tok/s = (new_tokens - 1) / time from the first to the last new token. The clock is a generate() streamer, which
    is called once with the prompt and then once per new token.
    """
    from transformers.generation.streamers import BaseStreamer

    device = input_ids.device

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    class Clock(BaseStreamer):
        def __init__(self):
            self.stamps = []

        def put(self, value):
            sync()
            self.stamps.append(time.perf_counter())

        def end(self):
            pass

    kwargs = dict(attention_mask=torch.ones_like(input_ids), do_sample=False, max_new_tokens=new_tokens,
                  min_new_tokens=new_tokens, pad_token_id=model.config.eos_token_id)
    with torch.inference_mode():
        model.generate(input_ids, **{**kwargs, "max_new_tokens": 2, "min_new_tokens": 2})  # warm-up
        clock = Clock()
        with PeakMemory(device) as mem:
            sync()
            start = time.perf_counter()
            model.generate(input_ids, streamer=clock, **kwargs)
    first, last = clock.stamps[1], clock.stamps[-1]
    decode = (new_tokens - 1) / (last - first) if new_tokens > 1 and last > first else float("nan")
    return {"ttft_s": first - start, "decode_tok_s": decode, "peak_mem_bytes": int(mem.peak_bytes)}


class needs:
    """`with needs("f"):` runs a demo cell, or prints a skip note while f still raises NotImplementedError."""

    def __init__(self, *names):
        self.names = names

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is NotImplementedError:
            print(f"skipped: implement {', '.join(self.names)} first")
            return True
        return False


def snippet(*objects) -> str:
    """Source text of the named helpers, for a notebook's locked setup cell."""
    return "\n\n".join(inspect.getsource(obj).rstrip() for obj in objects)


# What most labs' setup cell inlines, in order.
COMMON = (quiet_libraries, resolve_model_id, load_model, architecture_of, count_params, config_dict,
          record_benchmark, cache_nbytes, output_cache, _rss_bytes, PeakMemory)


def common_source(*extra) -> str:
    """IMPORTS, BENCHMARK_FIELDS and the COMMON helpers (+ extra) as one block of source text."""
    return (IMPORTS + "\n\nBENCHMARK_FIELDS = " + repr(BENCHMARK_FIELDS) + "\n\n\n"
            + snippet(*COMMON, *extra) + "\n\n\nquiet_libraries()\n")
