"""The config of every tiny model, as data.

Each entry names the transformers class, the kwargs of its config and what the labs use it for. Sizes are chosen
so that every model is a few hundred thousand parameters (well under 5 MB in fp32), runs a forward pass on one CPU
core in milliseconds, and still has the structure of its full-size counterpart in the ``spark`` profile (GQA in the
Llama, 8 experts top-2 in the Mixtral, a gated shared expert in the Qwen2-MoE, Mamba + attention + MoE layers in
the Jamba). ``pad/bos/eos`` ids match the tokenizer (0/1/2) and ``vocab_size`` its vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .tokenizer import VOCAB_SIZE

_SPECIAL_IDS = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
SEQ_LEN = 64  # training window, tokens


@dataclass(frozen=True)
class TinySpec:
    """One tiny model: its folder name, transformers config/model class names, config kwargs and training."""

    name: str
    config_class: str
    model_class: str
    purpose: str
    config: dict[str, Any] = field(default_factory=dict)
    train_steps: int = 0  # 0: saved at its seeded random initialisation
    batch_size: int = 16  # rows per training step
    seq_len: int = SEQ_LEN  # tokens per row
    lr: float = 3e-3


TINY_MAMBA = TinySpec(
    name="mamba",
    config_class="MambaConfig",
    model_class="MambaForCausalLM",
    purpose=(
        "Stands in for state-spaces/mamba-*-hf: inference and decode-state maths (2.4.1), the block anatomy (2.4.2), "
        "the Mamba side of the architecture comparison (2.4.5) and the LoRA fine-tune (2.4.6). Trained briefly on "
        "the synthetic corpus so its perplexity is meaningful (far below the vocabulary size)."
    ),
    config={
        "vocab_size": VOCAB_SIZE,
        "hidden_size": 64,
        "state_size": 16,
        "num_hidden_layers": 4,
        "expand": 2,
        "conv_kernel": 4,
        "time_step_rank": "auto",
        "tie_word_embeddings": True,
        "use_cache": True,
        **_SPECIAL_IDS,
    },
    train_steps=80,
    seq_len=32,
)

TINY_LLAMA = TinySpec(
    name="llama",
    config_class="LlamaConfig",
    model_class="LlamaForCausalLM",
    purpose=(
        "The Transformer baseline of the architecture comparison (2.4.5), standing in for EleutherAI/pythia-*: "
        "grouped-query attention (4 query heads, 2 KV heads) and about the Mamba's parameter count. Trained "
        "briefly on the same corpus; it gets more steps than the Mamba (whose causal conv gives it local n-grams "
        "for free) so both reach a similar held-out perplexity: not an equal-compute comparison."
    ),
    config={
        "vocab_size": VOCAB_SIZE,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "max_position_embeddings": 512,
        "tie_word_embeddings": True,
        "use_cache": True,
        **_SPECIAL_IDS,
    },
    train_steps=150,
    seq_len=32,
)

TINY_MIXTRAL = TinySpec(
    name="mixtral",
    config_class="MixtralConfig",
    model_class="MixtralForCausalLM",
    purpose=(
        "Mixtral-style sparse MoE for the router and expert-dispatch labs (2.4.3, 2.4.4): 8 experts, top-2, "
        "renormalised top-k weights, GQA attention. Untrained (seeded random weights)."
    ),
    config={
        "vocab_size": VOCAB_SIZE,
        "hidden_size": 64,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "num_local_experts": 8,
        "num_experts_per_tok": 2,
        "max_position_embeddings": 512,
        "router_aux_loss_coef": 0.001,
        "tie_word_embeddings": False,
        "use_cache": True,
        **_SPECIAL_IDS,
    },
)

TINY_QWEN2_MOE = TinySpec(
    name="qwen2-moe",
    config_class="Qwen2MoeConfig",
    model_class="Qwen2MoeForCausalLM",
    purpose=(
        "Stands in for Qwen/Qwen1.5-MoE-A2.7B (2.4.3, 2.4.4): fine-grained routed experts (8, top-4, no top-k "
        "renormalisation, norm_topk_prob=False) plus an always-on shared expert gated by sigmoid(Linear(h)). "
        "Untrained (seeded random weights)."
    ),
    config={
        "vocab_size": VOCAB_SIZE,
        "hidden_size": 64,
        "intermediate_size": 128,
        "moe_intermediate_size": 32,
        "shared_expert_intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "num_experts": 8,
        "num_experts_per_tok": 4,
        "norm_topk_prob": False,
        "decoder_sparse_step": 1,
        "max_position_embeddings": 512,
        "router_aux_loss_coef": 0.001,
        "tie_word_embeddings": False,
        "use_cache": True,
        **_SPECIAL_IDS,
    },
)

TINY_JAMBA = TinySpec(
    name="jamba",
    config_class="JambaConfig",
    model_class="JambaForCausalLM",
    purpose=(
        "A hybrid (architecture 'hybrid' in benchmarks.json) for the comparison lab (2.4.5): 4 layers, attention "
        "in layer 2 and Mamba elsewhere, a 4-expert top-2 MoE MLP in every second layer. Runs on CPU through "
        "transformers' pure-torch Mamba path (no mamba-ssm). Untrained (seeded random weights)."
    ),
    config={
        "vocab_size": VOCAB_SIZE,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "num_experts": 4,
        "num_experts_per_tok": 2,
        "expert_layer_period": 2,
        "expert_layer_offset": 1,
        "attn_layer_period": 4,
        "attn_layer_offset": 2,
        "mamba_d_state": 16,
        "mamba_d_conv": 4,
        "mamba_expand": 2,
        "use_mamba_kernels": False,
        "max_position_embeddings": 512,
        "tie_word_embeddings": True,
        "use_cache": True,
        **_SPECIAL_IDS,
    },
)

TINY_MOE_DOMAINS = TinySpec(
    name="moe-domains",
    config_class="MixtralConfig",
    model_class="MixtralForCausalLM",
    purpose=(
        "A Mixtral-style MoE trained on the code/maths/prose mix until its experts specialise by domain: the model "
        "behind the expert x domain activation table of lab 2.4.3 (compare it with the untrained 'mixtral')."
    ),
    # A larger balancing coefficient than Mixtral's 0.001 keeps every expert alive in a short run.
    config={**TINY_MIXTRAL.config, "tie_word_embeddings": True, "router_aux_loss_coef": 0.01},
    train_steps=120,
)

TINY_DEEPSEEK_MOE = TinySpec(
    name="deepseek-moe",
    config_class="DeepseekV2Config",
    model_class="DeepseekV2ForCausalLM",
    purpose=(
        "Stands in for deepseek-ai/deepseek-moe-16b-base in lab 2.4.3 (DeepSeekMoE: 2 shared + 64 fine-grained routed "
        "experts, top-6 softmax without renormalisation, the first layer dense). DeepSeekMoE itself has no "
        "transformers class (its checkpoint ships remote code); transformers' native DeepseekV2 is the same MoE "
        "(n_shared_experts, n_routed_experts, first_k_dense_replace, greedy softmax top-k) with MLA attention in "
        "place of plain multi-head attention. Here: 2 shared + 16 routed experts, top-4, layer 0 dense. Untrained."
    ),
    config={
        "vocab_size": VOCAB_SIZE,
        "hidden_size": 64,
        "intermediate_size": 128,
        "moe_intermediate_size": 16,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "n_routed_experts": 16,
        "n_shared_experts": 2,
        "num_experts_per_tok": 4,
        "first_k_dense_replace": 1,
        "norm_topk_prob": False,
        "topk_method": "greedy",
        "q_lora_rank": None,  # DeepSeek-V2-Lite: no low-rank query
        "kv_lora_rank": 32,
        "qk_nope_head_dim": 16,
        "qk_rope_head_dim": 8,
        "v_head_dim": 16,
        "max_position_embeddings": 512,
        "tie_word_embeddings": False,
        "use_cache": True,
        **_SPECIAL_IDS,
    },
)

TINY_OLMOE = TinySpec(
    name="olmoe",
    config_class="OlmoeConfig",
    model_class="OlmoeForCausalLM",
    purpose=(
        "Stands in for allenai/OLMoE-1B-7B-0924, the MoE of the architecture comparison (2.4.5): fine-grained routed "
        "experts with no shared expert (OLMoE: 64 experts top-8, here 16 top-2: the same 1/8 active share), q/k "
        "norms. Untrained (seeded random weights)."
    ),
    config={
        "vocab_size": VOCAB_SIZE,
        "hidden_size": 64,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "num_experts": 16,
        "num_experts_per_tok": 2,
        "max_position_embeddings": 512,
        "tie_word_embeddings": False,
        "use_cache": True,
        **_SPECIAL_IDS,
    },
)

SPECS: dict[str, TinySpec] = {
    s.name: s
    for s in (
        TINY_MAMBA, TINY_LLAMA, TINY_MIXTRAL, TINY_QWEN2_MOE, TINY_JAMBA, TINY_MOE_DOMAINS, TINY_DEEPSEEK_MOE,
        TINY_OLMOE,
    )
}
