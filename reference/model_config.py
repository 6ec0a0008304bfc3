"""Reading a model's config: fields under their transformers (or older) names, layer kinds and sliding windows.

A config is a Hugging Face config object (``PretrainedConfig``) or a plain dict of its fields (a ``config.json``).
Shared by the memory maths (reference.memory) and everything that judges a model's shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_MISSING = object()


def field(config: Any, *names: str, default: Any = _MISSING) -> Any:
    """The first of ``names`` that the config sets to a value other than None."""
    for name in names:
        if isinstance(config, Mapping):
            value = config.get(name)
        else:
            value = getattr(config, name, None)
        if value is not None:
            return value
    if default is _MISSING:
        raise KeyError(f"config has none of the fields {', '.join(names)}")
    return default


def model_type(config: Any) -> str:
    return str(field(config, "model_type", default="")).lower()


def num_layers(config: Any) -> int:
    return int(field(config, "num_hidden_layers", "n_layer", "num_layers", "n_layers"))


def hidden_size(config: Any) -> int:
    return int(field(config, "hidden_size", "d_model", "n_embd"))


def is_pure_ssm(config: Any) -> bool:
    """Mamba-1/2 (no attention layer at all)."""
    if model_type(config) in {"mamba", "mamba2", "falcon_mamba"}:
        return True
    has_state = field(config, "state_size", "d_state", default=None) is not None
    has_heads = field(config, "num_attention_heads", "n_head", default=None) is not None
    return has_state and not has_heads


def layer_kinds(config: Any) -> list[str]:
    """'attention' or 'mamba' for each layer (pure transformers: all attention; pure SSMs: all mamba)."""
    n = num_layers(config)
    if is_pure_ssm(config):
        return ["mamba"] * n
    explicit = field(config, "layers_block_type", default=None)
    if isinstance(explicit, list | tuple) and len(explicit) == n:
        return ["attention" if "attn" in str(k) or "attention" in str(k) else "mamba" for k in explicit]
    period = field(config, "attn_layer_period", default=None)
    if period is not None:  # Jamba: attention where i % period == offset
        offset = int(field(config, "attn_layer_offset", default=0))
        return ["attention" if i % int(period) == offset else "mamba" for i in range(n)]
    return ["attention"] * n


def _heads(config: Any) -> int:
    return int(field(config, "num_attention_heads", "n_head"))


def _kv_heads(config: Any) -> int:
    if model_type(config) == "falcon" and field(config, "multi_query", default=True) and not field(
        config, "new_decoder_architecture", default=False
    ):  # Falcon-7B: one shared K/V head, whatever num_kv_heads says (transformers reads it this way)
        return 1
    return int(field(config, "num_key_value_heads", "num_kv_heads", "n_head_kv", default=_heads(config)))


def _head_dim(config: Any) -> int:
    return int(field(config, "head_dim", default=hidden_size(config) // _heads(config)))


def _is_mla(config: Any) -> bool:
    return field(config, "kv_lora_rank", default=None) is not None


def _window(config: Any) -> int | None:
    window = field(config, "sliding_window", default=None)
    if window is None or not field(config, "use_sliding_window", default=True):
        return None
    return int(window)


def layer_windows(config: Any) -> list[int | None]:
    """The sliding window of each layer (None: full attention, or not an attention layer).

    The model's own ``layer_types`` decides where it has one (gpt-oss and Gemma 2 alternate windowed and full
    layers, Gemma 3 has five windowed layers to one full); configs written before transformers added that field
    get Gemma 2's alternation and Gemma 3's ``sliding_window_pattern``. A window without a layer pattern applies to
    every layer (Mistral 7B v0.1), the model's own reading of such a config.
    """
    kinds = layer_kinds(config)
    window = _window(config)
    if window is None:
        return [None] * len(kinds)
    types = field(config, "layer_types", default=None)
    if isinstance(types, list | tuple) and len(types) == len(kinds):
        windowed = ["sliding" in str(t) for t in types]
    elif model_type(config) == "gemma2":  # even layers local, odd layers global
        windowed = [i % 2 == 0 for i in range(len(kinds))]
    elif field(config, "sliding_window_pattern", default=None):  # Gemma 3: every pattern-th layer is global
        pattern = int(field(config, "sliding_window_pattern"))
        windowed = [(i + 1) % pattern != 0 for i in range(len(kinds))]
    else:
        windowed = [True] * len(kinds)
    return [window if w and k == "attention" else None for w, k in zip(windowed, kinds, strict=True)]


def _cached_tokens_per_layer(config: Any, seq_len: int) -> list[int]:
    """Tokens each attention layer keeps: all of them, or its sliding window where it has one."""
    return [
        seq_len if w is None else min(seq_len, w)
        for w, kind in zip(layer_windows(config), layer_kinds(config), strict=True)
        if kind == "attention"
    ]
