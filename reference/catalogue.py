"""The labs' models as data: config fields (transformers names) enough for parameter counts, KV cache and SSM state.

Shapes are the models' published ``config.json`` values. Parameter totals marked ``published`` are the model cards'
or papers' figures (docs/facts.md where it has them); the others are ``computed`` from the shape with
``reference.memory.estimate_params`` (which matches transformers' own counts on these architectures).
Perplexities are the Pile validation values of the Mamba paper (docs/facts.md), for a sanity range only: a lab that
measures on another corpus gets another number.

Adding a model is adding an entry: nothing else changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from reference.memory import ParamCounts, estimate_params

Architecture = Literal["transformer", "mamba", "moe", "hybrid"]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    hf_id: str
    architecture: Architecture
    config: Mapping[str, Any]
    params_total: int | None = None  # published figure; None: computed from the config
    params_active: int | None = None
    pile_perplexity: float | None = None  # Mamba paper, Pile validation, 300B tokens
    aliases: tuple[str, ...] = field(default=())

    @property
    def estimated(self) -> ParamCounts:
        return estimate_params(self.config)

    @property
    def params_source(self) -> str:
        return "published" if self.params_total is not None else "computed"

    @property
    def total(self) -> int:
        return self.params_total if self.params_total is not None else self.estimated.total

    @property
    def active(self) -> int:
        if self.params_active is not None:
            return self.params_active
        return self.params_total if self.params_total is not None else self.estimated.active


def _mamba(name: str, layers: int, hidden: int, ppl: float) -> ModelEntry:
    return ModelEntry(
        name=name,
        hf_id=f"state-spaces/{name}-hf",
        architecture="mamba",
        config=MappingProxyType(
            {
                "model_type": "mamba",
                "num_hidden_layers": layers,
                "hidden_size": hidden,
                "state_size": 16,
                "conv_kernel": 4,
                "expand": 2,
                "intermediate_size": 2 * hidden,
                "time_step_rank": "auto",
                "vocab_size": 50280,
                "tie_word_embeddings": True,
                "use_bias": False,
                "use_conv_bias": True,
            }
        ),
        pile_perplexity=ppl,
    )


def _pythia(name: str, layers: int, hidden: int, heads: int, total: int, ppl: float) -> ModelEntry:
    return ModelEntry(
        name=name,
        hf_id=f"EleutherAI/{name}",
        architecture="transformer",
        config=MappingProxyType(
            {
                "model_type": "gpt_neox",
                "num_hidden_layers": layers,
                "hidden_size": hidden,
                "num_attention_heads": heads,
                "intermediate_size": 4 * hidden,
                "vocab_size": 50304,
                "rotary_pct": 0.25,
                "tie_word_embeddings": False,
            }
        ),
        params_total=total,  # Pythia model card, "Total Params"
        params_active=total,
        pile_perplexity=ppl,
        aliases=(f"{name}-deduped",),
    )


def _dense(name: str, hf_id: str, layers: int, hidden: int, ffn: int, heads: int, kv: int, vocab: int,
           total: int, mtype: str, aliases: tuple[str, ...] = ()) -> ModelEntry:
    return ModelEntry(
        name=name,
        hf_id=hf_id,
        architecture="transformer",
        config=MappingProxyType(
            {
                "model_type": mtype,
                "num_hidden_layers": layers,
                "hidden_size": hidden,
                "intermediate_size": ffn,
                "num_attention_heads": heads,
                "num_key_value_heads": kv,
                "head_dim": 128,
                "vocab_size": vocab,
                "tie_word_embeddings": False,
            }
        ),
        params_total=total,
        params_active=total,
        aliases=aliases,
    )


_ENTRIES: tuple[ModelEntry, ...] = (
    _mamba("mamba-130m", 24, 768, 10.56),
    _mamba("mamba-370m", 48, 1024, 8.28),
    _mamba("mamba-790m", 48, 1536, 7.33),
    _mamba("mamba-1.4b", 48, 2048, 6.80),
    _mamba("mamba-2.8b", 64, 2560, 6.22),
    _pythia("pythia-410m", 24, 1024, 16, 405_334_016, 9.95),
    _pythia("pythia-1b", 16, 2048, 8, 1_011_781_632, 7.82),
    _pythia("pythia-1.4b", 24, 2048, 16, 1_414_647_808, 7.51),
    _pythia("pythia-2.8b", 32, 2560, 32, 2_775_208_960, 6.73),
    ModelEntry(
        name="mixtral-8x7b",
        hf_id="mistralai/Mixtral-8x7B-v0.1",
        architecture="moe",
        config=MappingProxyType(
            {
                "model_type": "mixtral",
                "num_hidden_layers": 32,
                "hidden_size": 4096,
                "intermediate_size": 14336,
                "num_attention_heads": 32,
                "num_key_value_heads": 8,
                "head_dim": 128,
                "num_local_experts": 8,
                "num_experts_per_tok": 2,
                "vocab_size": 32000,
                "sliding_window": None,
                "tie_word_embeddings": False,
            }
        ),
        params_total=46_700_000_000,  # docs/facts.md: 46.7B total, 12.9B active
        params_active=12_900_000_000,
        aliases=("mixtral-8x7b-v0.1", "mixtral-8x7b-instruct-v0.1"),
    ),
    ModelEntry(
        name="deepseek-moe-16b",
        hf_id="deepseek-ai/deepseek-moe-16b-base",
        architecture="moe",
        config=MappingProxyType(
            {
                "model_type": "deepseek",
                "num_hidden_layers": 28,
                "hidden_size": 2048,
                "intermediate_size": 10944,  # the dense first layer
                "moe_intermediate_size": 1408,
                "num_attention_heads": 16,
                "num_key_value_heads": 16,
                "n_routed_experts": 64,
                "n_shared_experts": 2,
                "num_experts_per_tok": 6,
                "first_k_dense_replace": 1,
                "moe_layer_freq": 1,
                "vocab_size": 102400,
                "tie_word_embeddings": False,
            }
        ),
        params_total=16_400_000_000,  # docs/facts.md: 16.4B total, ~2.8B active
        params_active=2_800_000_000,
        aliases=("deepseek-moe-16b-base", "deepseek-moe-16b-chat", "deepseekmoe-16b"),
    ),
    ModelEntry(
        name="qwen1.5-moe-a2.7b",
        hf_id="Qwen/Qwen1.5-MoE-A2.7B",
        architecture="moe",
        config=MappingProxyType(
            {
                "model_type": "qwen2_moe",
                "num_hidden_layers": 24,
                "hidden_size": 2048,
                "intermediate_size": 5632,
                "moe_intermediate_size": 1408,
                "shared_expert_intermediate_size": 5632,
                "num_attention_heads": 16,
                "num_key_value_heads": 16,
                "num_experts": 60,
                "num_experts_per_tok": 4,
                "vocab_size": 151936,
                "use_sliding_window": False,
                "tie_word_embeddings": False,
            }
        ),
        params_total=14_300_000_000,  # model card: 14.3B total, 2.7B activated
        params_active=2_700_000_000,
        aliases=("qwen1.5-moe-a2.7b-chat",),
    ),
    ModelEntry(
        name="olmoe-1b-7b",
        hf_id="allenai/OLMoE-1B-7B-0924",
        architecture="moe",
        config=MappingProxyType(
            {
                "model_type": "olmoe",
                "num_hidden_layers": 16,
                "hidden_size": 2048,
                "intermediate_size": 1024,  # per expert
                "num_attention_heads": 16,
                "num_key_value_heads": 16,
                "num_experts": 64,
                "num_experts_per_tok": 8,
                "vocab_size": 50304,
                "tie_word_embeddings": False,
            }
        ),
        params_total=6_900_000_000,  # OLMoE paper: 6.9B total, 1.3B active
        params_active=1_300_000_000,
        aliases=("olmoe-1b-7b-0924", "olmoe-1b-7b-0125", "olmoe-1b-7b-0924-instruct"),
    ),
    ModelEntry(
        name="deepseek-v2-lite",
        hf_id="deepseek-ai/DeepSeek-V2-Lite",
        architecture="moe",
        config=MappingProxyType(
            {
                "model_type": "deepseek_v2",
                "num_hidden_layers": 27,
                "hidden_size": 2048,
                "intermediate_size": 10944,
                "moe_intermediate_size": 1408,
                "num_attention_heads": 16,
                "num_key_value_heads": 16,
                "kv_lora_rank": 512,
                "q_lora_rank": None,
                "qk_nope_head_dim": 128,
                "qk_rope_head_dim": 64,
                "v_head_dim": 128,
                "n_routed_experts": 64,
                "n_shared_experts": 2,
                "num_experts_per_tok": 6,
                "first_k_dense_replace": 1,
                "moe_layer_freq": 1,
                "vocab_size": 102400,
                "tie_word_embeddings": False,
            }
        ),
        params_total=15_700_000_000,  # model card: 15.7B total, 2.4B activated (input embedding not counted)
        params_active=2_400_000_000,
        aliases=("deepseek-v2-lite-chat",),
    ),
    # The dense models of the published DGX Spark decode measurements (docs/facts.md, "Hardware").
    _dense("qwen3-8b", "Qwen/Qwen3-8B", 36, 4096, 12288, 32, 8, 151936, 8_190_000_000, "qwen3"),
    _dense("qwen3-32b", "Qwen/Qwen3-32B", 64, 5120, 25600, 64, 8, 151936, 32_800_000_000, "qwen3"),
    _dense("llama-3.1-8b", "meta-llama/Llama-3.1-8B", 32, 4096, 14336, 32, 8, 128256, 8_030_000_000, "llama",
           aliases=("meta-llama-3.1-8b", "llama-3.1-8b-instruct", "meta-llama-3.1-8b-instruct")),
)


def _key(name: str) -> str:
    key = name.strip().lower().rsplit("/", 1)[-1]
    return key.removesuffix("-hf")


MODELS: dict[str, ModelEntry] = {e.name: e for e in _ENTRIES}
_INDEX: dict[str, ModelEntry] = {}
for _entry in _ENTRIES:
    for _name in (_entry.name, _entry.hf_id, *_entry.aliases):
        _INDEX[_key(_name)] = _entry


def lookup(name: str) -> ModelEntry | None:
    """The catalogue entry for a model name or Hugging Face id (case-insensitive, '-hf' suffix optional)."""
    return _INDEX.get(_key(name))
