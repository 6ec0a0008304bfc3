"""Lab 2.4.3 (moe-exploration): anatomy of an MoE model, total vs active parameters, experts x domains.

Student functions (grade_id = name): moe_param_counts, expert_activation_counts.
Build: ``python assignments/labs/lab_2_4_3.py`` writes assignments/source/lab-2.4.3-moe-exploration/.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common, prompts
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # nbbuild, labkit

import labkit
from common import SOURCE_ROOT, course_models_source, parameters_cell, profile_cell, setup_cell
from nbbuild import code, locked, md, solution, visible_tests, write, written
from prompts import write_domain_prompts

LAB_ID = "lab-2.4.3-moe-exploration"

INTRO = r"""
# Lab 2.4.3: Exploring a Mixture-of-Experts model

Mixture-of-Experts (MoE) models such as Mixtral 8x7B, DeepSeekMoE, Qwen1.5-MoE-A2.7B, DeepSeek-V2/V3 and OLMoE
replace the dense feed-forward block of a Transformer with many expert FFNs and a router that sends each token to
only a few of them. They hold many parameters but use few per token. In this lab you take **DeepSeekMoE-16B** apart
(spark profile; the tiny profile loads a small model of the same shape): 28 layers, the first one dense, then in
every layer 2 always-active **shared experts** plus 64 small **fine-grained routed experts** of which the router
picks 6 per token: 16.4B parameters in total, about 2.8B used per token.

**Learning goals.** After this lab you can

1. name the modules of an MoE block (router, routed experts, shared experts) and their shapes;
2. count a model's **total** and **active** parameters from its config, and say what each one costs: memory vs
   compute;
3. count which experts the router activates, and build an **expert x domain** table for code, maths and prose;
4. place hybrids such as Jamba and Granite 4.0 (Mamba + attention + MoE) in the same picture.

**How to work.** Implement each function in its solution cell (replace `raise NotImplementedError()`), then run the
locked test cell below it. Demo cells skip themselves until the functions they need exist.
"""

MATHS = r"""
## The maths of sparse activation

An MoE layer with $E$ experts and top-$k$ routing computes, for a token with hidden state $h$,
$$p = \mathrm{softmax}(W_g h)\in\mathbb{R}^E,\qquad S=\mathrm{TopK}(p,k),\qquad
y = \sum_{e\in S} w_e\,\mathrm{FFN}_e(h)\;\big[+\;\sigma(w_s^\top h)\,\mathrm{FFN}_{\text{shared}}(h)\big],$$
with $w_e$ the (Mixtral: renormalised; DeepSeekMoE: raw) top-$k$ probabilities and, in Qwen2-MoE and DeepSeekMoE,
always-active **shared experts**. Each expert is a SwiGLU FFN with three $d\times F$ matrices: $3dF$ parameters.
DeepSeekMoE makes the experts *fine-grained* (64 experts of $F=1408$ instead of 8 of a full FFN, and top-6 instead of
top-2: more combinations at the same compute) and *isolates* 2 shared experts that every token uses, so common
knowledge need not be copied into every routed expert. Its first layer keeps a dense FFN (`first_k_dense_replace`).

**Total vs active.** With $L$ sparse layers,
$$N_{\text{total}} = N_{\text{dense}} + L\,(E\cdot 3dF + Ed), \qquad
N_{\text{active}} = N_{\text{total}} - L\,(E-k)\cdot 3dF,$$
where $N_{\text{dense}}$ holds everything every token uses: embeddings, attention, norms, routers, shared experts
and dense layers. DeepSeekMoE-16B: $L=27$, $E=64$, $k=6$, $N_{\text{total}}\approx 16.4$B but
$N_{\text{active}}\approx 2.8$B. Mixtral 8x7B: $E=8$, $k=2$, 46.7B total, 12.9B active.

**Memory vs compute.**

- *Memory* follows $N_{\text{total}}$: every expert must be resident, because the next token may pick any of them.
  In bf16, $2N_{\text{total}}$ bytes (DeepSeekMoE-16B: 32.8 GB; Mixtral: 93 GB).
- *Compute* follows $N_{\text{active}}$: a forward pass costs about $2N_{\text{active}}$ FLOPs per token
  (DeepSeekMoE-16B: 5.7 GFLOP, like a 3B dense model; Mixtral: 26 GFLOP).
- *Batch-1 decode* is memory-bandwidth bound: each token reads the active weights, about $2N_{\text{active}}$ bytes,
  so tok/s $\lesssim$ bandwidth / $(2N_{\text{active}})$. With larger batches different tokens pick different experts,
  so more of the $N_{\text{total}}$ weights are read per step and the advantage shrinks.

**Hybrids.** Jamba (AI21) interleaves Mamba and attention layers (1 attention : 7 Mamba) and makes every second
MLP an MoE (16 experts, top-2): 52B total, 12B active, and a KV cache only for the few attention layers. Granite
4.0 (IBM) mixes Mamba-2 and attention layers about 9:1; its H-Tiny and H-Small models are also MoE (7B total / 1B
active, 32B total / 9B active). The SSM layers cut the KV cache (memory that grows with context), the MoE cuts the
active parameters (compute per token): two independent levers.
"""


def cells() -> list:
    return [
        md(INTRO),
        md(MATHS),
        parameters_cell(),
        setup_cell(),
        profile_cell(
            tiny={"moe": "deepseek-moe", "moe_alt": "qwen2-moe", "domains": "moe-domains", "hybrid": "jamba"},
            spark={
                "moe": "deepseek-ai/deepseek-moe-16b-base",
                "moe_alt": "Qwen/Qwen1.5-MoE-A2.7B",
                "domains": "deepseek-ai/deepseek-moe-16b-base",
                "hybrid": "ibm-granite/granite-4.0-h-tiny",
            },
            extra=course_models_source() + "\n" + DATA_EXTRA,
        ),
        locked("helpers", HELPERS),
        locked("moe_model", MOE_MODEL),
        md(r"""
        ## 1. Anatomy of an MoE block

        A sparse decoder layer's `mlp` holds a router at `.gate` (a weight of shape (E, d)), the routed experts at
        `.experts` and the shared experts. In `transformers` 5.x classes (the tiny DeepSeekMoE-like model is a
        `DeepseekV2ForCausalLM`, Qwen2-MoE, Mixtral) the routed experts are fused into two 3-D parameters
        (`gate_up_proj` of shape (E, 2F, d) and `down_proj` of shape (E, d, F)) and the shared experts are one MLP
        (`shared_experts`, width n_shared x F; Qwen2-MoE: `shared_expert` with a sigmoid `shared_expert_gate`).
        DeepSeekMoE-16B's own code (spark profile) keeps a list of 64 separate expert MLPs: same parameters, other
        layout. The first layer is dense: it has no `.gate`.
        """),
        code(ANATOMY),
        md(r"""
        ## 2. Total and active parameters

        Implement `moe_param_counts(config) -> {"total": int, "active": int}` **from the config alone** for
        Mixtral (`model_type` "mixtral"), Qwen2-MoE ("qwen2_moe"), DeepSeekMoE ("deepseek") and DeepSeek-V2/V3
        ("deepseek_v2", "deepseek_v3") configs:

        - `total` must equal `sum(p.numel() for p in model.parameters())` of the model built from the config:
          embeddings, lm_head (once only if `tie_word_embeddings`), per layer two RMSNorms, attention, the router
          ($E\cdot d$), the routed experts ($E\cdot 3dF$), the shared experts, and the final norm.
        - Mixtral: $F$ = `intermediate_size`, every layer sparse. Qwen2-MoE: $F$ = `moe_intermediate_size`, a
          shared expert ($3dF_s$, $F_s$ = `shared_expert_intermediate_size`) with its gate ($d$), q/k/v biases when
          `qkv_bias`; layers in `mlp_only_layers` or off the `decoder_sparse_step` grid have a dense MLP of
          `intermediate_size`.
        - DeepSeek: $E$ = `n_routed_experts`, $F$ = `moe_intermediate_size`, shared experts of
          $3d\cdot(F\cdot$ `n_shared_experts`$)$; layer $i$ is sparse when $i \ge$ `first_k_dense_replace` and
          $i$ % `moe_layer_freq` == 0, else dense (`intermediate_size`). DeepSeekMoE's attention is plain multi-head
          attention (q, k, v, o; biases if `attention_bias`). DeepSeek-V2/V3 use Multi-head Latent Attention:
          with $H$ heads, $d_n$ = `qk_nope_head_dim`, $d_r$ = `qk_rope_head_dim`, $d_v$ = `v_head_dim`,
          $r_{kv}$ = `kv_lora_rank`: the query is `q_proj` $d\to H(d_n+d_r)$, or, when `q_lora_rank` $r_q$ is set,
          `q_a_proj` $d\to r_q$, a norm of $r_q$, `q_b_proj` $r_q\to H(d_n+d_r)$; then `kv_a_proj_with_mqa`
          $d\to r_{kv}+d_r$, a norm of $r_{kv}$, `kv_b_proj` $r_{kv}\to H(d_n+d_v)$, `o_proj` $Hd_v\to d$.
        - `active` = total minus the $(E-k)$ routed experts a token skips in each sparse layer (shared experts,
          dense layers, routers, attention and embeddings always count).
        - DeepSeekMoE has no `transformers` class: its config arrives as a dict, and `config_from_fields` (given
          in the solution cell) turns it into an object with its fields and the defaults of DeepSeek's own
          configuration code.
        """),
        solution("moe_param_counts", PARAM_COUNTS),
        visible_tests("test_moe_param_counts", TEST_PARAM_COUNTS, points=11),
        md(r"""
        ### Total vs active memory

        What each number costs, for the model you loaded and for full-size configs (offline, from their published
        hyper-parameters: DeepSeekMoE-16B's config.json, and `MixtralConfig()`, `Qwen2MoeConfig()`,
        `DeepseekV3Config()`, which default to Mixtral 8x7B, Qwen1.5-MoE-A2.7B and DeepSeek-V3). "Resident" is what
        must fit in memory; "read per token" is what batch-1 decode streams from memory per token; the last column is
        the bandwidth bound on the DGX Spark (273 GB/s).
        """),
        code(MEMORY_TABLE),
        md(r"""
        ## 3. Which experts fire?

        Implement `expert_activation_counts(router_logits, top_k) -> LongTensor (layers, E)`: for each layer, how
        many top-k slots chose each expert.

        - `router_logits`: a tuple of per-layer tensors (what `model(..., output_router_logits=True).router_logits`
          returns: one (batch·seq, E) tensor per MoE layer; other leading shapes are flattened into tokens), or one
          (layers, tokens, E) tensor; a single 2-D (tokens, E) tensor counts as one layer.
        - selection as the model does it: top-k of the fp32 softmax (the same experts as top-k of the logits);
        - every row sums to tokens·k. Return int64 on the logits' device.
        """),
        solution("expert_activation_counts", ACTIVATION_COUNTS),
        visible_tests("test_expert_activation_counts", TEST_COUNTS, points=5),
        md(r"""
        ### Expert x domain table

        We route text from three domains (code, maths, prose) through the domain model and count, per layer, the
        share of each domain's top-k slots that every expert receives. A column that stands out in one domain's row
        marks an expert that *specialises*. (In the tiny profile the model is a small Mixtral trained on the three
        domains; in the spark profile it is DeepSeekMoE-16B on the prompts this lab ships in `prompts/`.) The
        router logits come from a forward hook on every sparse layer's router (`router_logits_for` in the helpers
        cell): the same code for every model, including DeepSeekMoE's own modelling code, which does not return
        router logits.
        """),
        code(DOMAIN_TABLE),
        md(r"""
        Domain is not the only thing a router can key on. The cell below lists, for each expert of the last MoE
        layer, the tokens it most often receives as its top-1 choice: look for syntax (digits, indentation,
        punctuation) rather than topic.
        """),
        code(TOKENS_PER_EXPERT),
        md(r"""
        ## 4. Hybrids: Mamba + attention + MoE

        A hybrid's layer plan (tiny: a small Jamba; spark: Granite 4.0-H-Tiny), read from its config alone (the
        model is built on the `meta` device: shapes, no weights, no memory), with its total and active parameters
        (routed experts counted at $k/E$).
        """),
        code(HYBRID),
        md("## 5. Questions"),
        written(
            "q_memory_vs_compute",
            r"""
            **Q1 (3 points).** Using your table for DeepSeekMoE-16B: how much memory must a server hold for the
            weights in bf16, and how much compute does one token cost? What is the batch-1 decode bound on a DGX
            Spark (273 GB/s), and how does it compare with a dense model of the same total size? Why does that
            advantage shrink at large batch sizes?
            """,
            points=3,
            model_answer=r"""
            Memory follows the total: 16.4B parameters, $2\times 16.4 \approx 32.8$ GB in bf16, because any token may
            be routed to any of the 64 routed experts, so all must be resident (it fits one 40 GB GPU and easily the
            Spark's 128 GB). Compute follows the active count: about 2.8B parameters (the 2 shared experts, 6 routed
            experts, attention, the dense first layer, routers and embeddings), $\approx 2\times 2.8 = 5.7$ GFLOP
            per token, like a 3B dense model. Batch-1 decode is memory-bandwidth bound: each token streams only the
            weights it uses, $\approx 5.7$ GB, so the bound is 273 GB/s / 5.7 GB $\approx 48$ tok/s, against
            $\approx 8$ tok/s for a dense 16B model that reads all 32.8 GB per token. With a large batch the tokens
            of one step choose different experts (6 of 64 each); soon every expert is read every step, so the bytes
            read per step approach the total (32.8 GB) while the FLOPs per token stay at the active count: the
            bandwidth advantage over a dense 16B model is gone, only the compute advantage remains (and load
            imbalance between experts adds latency).
            """,
        ),
        written(
            "q_specialisation",
            r"""
            **Q2 (3 points).** Describe your expert x domain heatmap: do some experts specialise by domain, and in
            which layers is it clearest? Relate it to the tokens each expert receives. The Mixtral paper (Jiang et al.
            2024, Sec. 5) found little domain specialisation but strong syntactic patterns: is your observation
            consistent with that, and why might a tiny model trained on three very different synthetic domains
            behave differently?
            """,
            points=3,
            model_answer=r"""
            (Answers depend on the run; a good answer reads the plot.) In the tiny profile a few experts take a
            clearly larger share of one domain's slots than of the others (e.g. one expert for maths with its digits
            and operators, one for code with indentation, brackets and keywords), usually more sharply in the later
            layer; other experts are shared by all domains. The per-expert token lists show what the router really
            keys on: surface form (digits, `=`, newline + spaces, punctuation, common words), not topic. That
            is consistent with Mixtral's finding: experts specialise by syntax and token type, and routing is similar
            across ArXiv, biology and philosophy text, because the router is a linear function of the current hidden
            state. The tiny domains are synthetic and differ completely in their vocabularies (code keywords,
            digits, English words), so token identity is almost the same as the domain and syntactic specialisation
            looks like domain specialisation. Real text mixes tokens across domains, so the table of a real model is
            much flatter.
            """,
        ),
        written(
            "q_hybrids",
            r"""
            **Q3 (3 points).** Jamba and Granite 4.0-H combine Mamba layers, a few attention layers and MoE MLPs.
            Which resource does each of the three ingredients save or spend (weights memory, KV-cache memory, compute
            per token, long-range recall), and why keep any attention layers at all?
            """,
            points=3,
            model_answer=r"""
            Mamba layers keep a fixed-size recurrent state instead of a KV cache, so memory for context does not grow
            with sequence length and per-token decode cost is constant; they are cheap for long contexts. MoE MLPs
            add capacity (total parameters, so weights memory) while keeping the active parameters, hence compute
            per token, low. Attention layers spend memory (a KV cache that grows linearly with context) and
            quadratic prefill compute, but give exact content-based lookup: pure SSMs compress the past into a
            fixed state and are weaker at in-context retrieval, copying and associative recall. A few attention
            layers (1 in 8 for Jamba, about 1 in 10 for Granite 4.0) restore that ability, while the KV cache is
            only a fraction of a Transformer's, so long contexts and large batches fit in memory. The hybrid trades
            a little of each: MoE for compute, Mamba for memory, attention for recall.
            """,
        ),
    ]


DATA_EXTRA = """\
DOMAINS = ("code", "maths", "prose")
# Text to route: the tiny models' own validation corpus, or the short real-world prompts this lab ships.
DOMAIN_FILES = ({d: MODELS_DIR / "data" / "corpus" / f"{d}_valid.txt" for d in DOMAINS} if PROFILE == "tiny"
                else {d: Path("prompts") / f"{d}.txt" for d in DOMAINS})"""

HELPERS = r'''
import matplotlib.pyplot as plt
import pandas as pd

pd.set_option("display.width", 160)
from transformers import AutoConfig


''' + labkit.snippet(labkit.needs) + r'''


def num_routed_experts(config):
    return (getattr(config, "num_local_experts", None) or getattr(config, "n_routed_experts", None)
            or config.num_experts)


def moe_routers(model):
    """The router of every sparse layer, in layer order: `mlp.gate`, holding an (E, d) weight."""
    gates = [getattr(layer.mlp, "gate", None) for layer in model.model.layers]
    return [g for g in gates if g is not None and getattr(g, "weight", None) is not None and g.weight.dim() == 2]


def router_logits_for(model, tokenizer, text, max_tokens=768, chunk=256):
    """Route up to max_tokens of text: (tuple of per-layer (tokens, E) fp32 router logits, token ids (tokens,)).

    A forward hook on each router computes its logits, W_g h, from the hidden states it receives: the same code
    for every model (DeepSeekMoE's own modelling code has no output_router_logits).
    """
    ids = tokenizer(text, return_tensors="pt").input_ids[0][:max_tokens]
    ids = ids[: max(chunk, ids.numel() // chunk * chunk)] if ids.numel() >= chunk else ids
    rows = ids.reshape(-1, chunk) if ids.numel() % chunk == 0 else ids[None]
    captured = []

    def keep_logits(gate, args, kwargs, output):
        hidden = args[0] if args else next(iter(kwargs.values()))
        weight = gate.weight.float()
        captured.append((hidden.reshape(-1, weight.shape[1]).float() @ weight.T).cpu())

    hooks = [g.register_forward_hook(keep_logits, with_kwargs=True) for g in moe_routers(model)]
    try:
        with torch.no_grad():
            model(input_ids=rows.to(DEVICE))
    finally:
        for hook in hooks:
            hook.remove()
    return tuple(captured), rows.reshape(-1)


def load_role(role):
    """(model, tokenizer) of one role of MODEL_IDS; remote code only for the roles the course trusts."""
    try:
        return load_model(MODEL_IDS[role], DTYPE, DEVICE, trust_remote_code=role in TRUSTED_ROLES)
    except ValueError as exc:
        if "trust_remote_code" not in str(exc):
            raise
        raise RuntimeError(
            f"{MODEL_IDS[role]} ships its own modelling code: your instructor enables it for the role {role!r} "
            f"in the course's models.yaml (trust_remote_code: [{role}]), or picks a checkpoint with a transformers "
            f"class (e.g. the moe_alt role, {MODEL_IDS.get('moe_alt')})") from None
'''

# Loading the model (and data) is an experiment, not a definition: the grader's definitions-only run skips it
# (the hidden checks make their own inputs).
MOE_MODEL = r'''
model, tokenizer = load_role("moe")
if MODEL_IDS["domains"] == MODEL_IDS["moe"]:
    domain_model, domain_tokenizer = model, tokenizer
else:
    domain_model, domain_tokenizer = load_role("domains")
'''

ANATOMY = r"""
cfg = model.config
block = next(layer.mlp for layer in model.model.layers if hasattr(layer.mlp, "gate"))
print(f"{cfg.model_type}: {cfg.num_hidden_layers} layers ({len(moe_routers(model))} sparse), d={cfg.hidden_size}, "
      f"{num_routed_experts(cfg)} routed experts, top-{cfg.num_experts_per_tok}, "
      f"shared experts: {getattr(cfg, 'n_shared_experts', None) or getattr(cfg, 'shared_expert_intermediate_size', 0)}")
print(block)
for name, p in block.named_parameters():
    print(f"  mlp.{name:32s} {str(tuple(p.shape)):18s} {p.numel():>12,d}")
"""

PARAM_COUNTS = r'''
# DeepSeekMoE (model_type "deepseek") has no transformers config class; its defaults, from its configuration code.
DEEPSEEK_DEFAULTS = {"n_shared_experts": None, "first_k_dense_replace": 0, "moe_layer_freq": 1,
                     "attention_bias": False, "tie_word_embeddings": False, "num_key_value_heads": None}


def config_from_fields(fields):
    """A config object from a dict of config.json fields: the transformers class when there is one, else the fields
    as attributes (DeepSeekMoE's defaults filled in)."""
    from types import SimpleNamespace

    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    rest = {k: v for k, v in fields.items() if k != "model_type"}
    if fields["model_type"] in CONFIG_MAPPING:
        return AutoConfig.for_model(fields["model_type"], **rest)
    return SimpleNamespace(**{**(DEEPSEEK_DEFAULTS if fields["model_type"] == "deepseek" else {}), **fields})


def moe_param_counts(config):
    """{"total": int, "active": int} of a Mixtral, Qwen2-MoE, DeepSeekMoE or DeepSeek-V2/V3 causal LM, from its config.

    config: a config object, or a dict of its fields (config.json, config.to_dict()): the grader sends dicts, and
    the two lines below turn one into an object with the fields as attributes.
    """
    if isinstance(config, dict):
        config = config_from_fields(config)
    ### BEGIN SOLUTION
    mtype = config.model_type
    deepseek = mtype in ("deepseek", "deepseek_v2", "deepseek_v3")
    if mtype not in ("mixtral", "qwen2_moe") and not deepseek:
        raise ValueError(f"moe_param_counts supports mixtral, qwen2_moe and deepseek* configs, not {mtype!r}")
    h, vocab = config.hidden_size, config.vocab_size
    n_heads = config.num_attention_heads
    if mtype in ("deepseek_v2", "deepseek_v3"):  # Multi-head Latent Attention
        qk = config.qk_nope_head_dim + config.qk_rope_head_dim
        bias = getattr(config, "attention_bias", False)
        q_rank, kv_rank = config.q_lora_rank, config.kv_lora_rank
        query = (h * q_rank + bias * q_rank + q_rank + q_rank * n_heads * qk) if q_rank else h * n_heads * qk
        kv = (h + bias) * (kv_rank + config.qk_rope_head_dim) + kv_rank
        kv += kv_rank * n_heads * (config.qk_nope_head_dim + config.v_head_dim)
        attention = query + kv + n_heads * config.v_head_dim * h + bias * h
    else:
        n_kv = getattr(config, "num_key_value_heads", None) or n_heads
        head_dim = getattr(config, "head_dim", None) or h // n_heads
        q_out, kv_out = n_heads * head_dim, n_kv * head_dim
        attention = h * q_out + 2 * h * kv_out + q_out * h
        if mtype == "qwen2_moe" and getattr(config, "qkv_bias", True):
            attention += q_out + 2 * kv_out
        if mtype == "deepseek" and getattr(config, "attention_bias", False):
            attention += q_out + 2 * kv_out + h
    if mtype == "mixtral":
        n_experts, ffn, shared = config.num_local_experts, config.intermediate_size, 0
    elif mtype == "qwen2_moe":
        n_experts, ffn = config.num_experts, config.moe_intermediate_size
        shared = 3 * h * config.shared_expert_intermediate_size + h  # shared expert + its sigmoid gate
    else:
        n_experts, ffn = config.n_routed_experts, config.moe_intermediate_size
        shared = 3 * h * ffn * (getattr(config, "n_shared_experts", None) or 0)
    expert = 3 * h * ffn  # gate, up, down (no biases)
    total = vocab * h + h + (0 if getattr(config, "tie_word_embeddings", False) else vocab * h)
    skipped = 0
    for i in range(config.num_hidden_layers):
        total += attention + 2 * h
        if mtype == "mixtral":
            sparse = True
        elif mtype == "qwen2_moe":
            sparse = (i not in (config.mlp_only_layers or []) and n_experts > 0
                      and (i + 1) % config.decoder_sparse_step == 0)
        else:
            sparse = (i >= (getattr(config, "first_k_dense_replace", 0) or 0)
                      and i % (getattr(config, "moe_layer_freq", 1) or 1) == 0)
        if sparse:
            total += n_experts * h + n_experts * expert + shared
            skipped += (n_experts - config.num_experts_per_tok) * expert
        else:
            total += 3 * h * config.intermediate_size
    return {"total": total, "active": total - skipped}
    ### END SOLUTION
'''

TEST_PARAM_COUNTS = r"""
from transformers import (DeepseekV2Config, DeepseekV2ForCausalLM, MixtralConfig, MixtralForCausalLM, Qwen2MoeConfig,
                          Qwen2MoeForCausalLM)


def instantiated(model_class, config):
    with torch.device("meta"):  # shapes only: counting needs no memory
        return sum(p.numel() for p in model_class(config).parameters())


mixtral = MixtralConfig(vocab_size=100, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2)
counts = moe_param_counts(mixtral)
assert set(counts) == {"total", "active"}, f"keys {sorted(counts)}"
assert isinstance(counts["total"], int) and isinstance(counts["active"], int), "return plain ints"
expected = instantiated(MixtralForCausalLM, mixtral)
assert counts["total"] == expected, f"Mixtral total {counts['total']:,} != instantiated model's {expected:,}"
assert counts["total"] - counts["active"] == 2 * (4 - 2) * 3 * 32 * 48, "active = total - (E-k) experts per layer"

qwen = Qwen2MoeConfig(vocab_size=100, hidden_size=32, intermediate_size=64, moe_intermediate_size=16,
                      shared_expert_intermediate_size=40, num_hidden_layers=3, num_attention_heads=4,
                      num_key_value_heads=2, num_experts=6, num_experts_per_tok=2, mlp_only_layers=[0],
                      tie_word_embeddings=True)
counts = moe_param_counts(qwen)
expected = instantiated(Qwen2MoeForCausalLM, qwen)
assert counts["total"] == expected, f"Qwen2-MoE total {counts['total']:,} != instantiated model's {expected:,}"
assert counts["total"] - counts["active"] == 2 * (6 - 2) * 3 * 32 * 16, "shared experts and dense layers stay active"
assert moe_param_counts(qwen.to_dict()) == counts, "a dict of the config's fields gives the same counts"

# DeepSeek-V2 shape: MLA attention, 2 shared + 8 routed experts (top-2), the first layer dense.
deepseek = DeepseekV2Config(vocab_size=100, hidden_size=32, intermediate_size=64, moe_intermediate_size=8,
                            num_hidden_layers=3, num_attention_heads=4, n_routed_experts=8, n_shared_experts=2,
                            num_experts_per_tok=2, first_k_dense_replace=1, q_lora_rank=None, kv_lora_rank=16,
                            qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8)
counts = moe_param_counts(deepseek)
expected = instantiated(DeepseekV2ForCausalLM, deepseek)
assert counts["total"] == expected, f"DeepSeek-V2 total {counts['total']:,} != instantiated model's {expected:,}"
assert counts["total"] - counts["active"] == 2 * (8 - 2) * 3 * 32 * 8, "2 sparse layers skip 6 experts each"

# DeepSeekMoE-16B from its config.json (github.com/deepseek-ai/DeepSeek-MoE: 16.4B parameters, ~2.8B active).
deepseek_moe_16b = dict(model_type="deepseek", vocab_size=102400, hidden_size=2048, intermediate_size=10944,
                        moe_intermediate_size=1408, num_hidden_layers=28, num_attention_heads=16,
                        num_key_value_heads=16, n_routed_experts=64, n_shared_experts=2, num_experts_per_tok=6,
                        first_k_dense_replace=1, moe_layer_freq=1)
big = moe_param_counts(deepseek_moe_16b)
assert round(big["total"] / 1e9, 1) == 16.4 and round(big["active"] / 1e9, 1) == 2.8, big
big = moe_param_counts(MixtralConfig())  # Mixtral 8x7B
assert abs(big["total"] / 46.7e9 - 1) < 0.01 and abs(big["active"] / 12.9e9 - 1) < 0.01, big
print("moe_param_counts: all visible tests passed")
"""

MEMORY_TABLE = r"""
from transformers import DeepseekV3Config, MixtralConfig, Qwen2MoeConfig

SPARK_BANDWIDTH = 273e9  # bytes/s
# deepseek-ai/deepseek-moe-16b-base config.json (model_type "deepseek": no transformers class, so a dict)
DEEPSEEK_MOE_16B = dict(model_type="deepseek", vocab_size=102400, hidden_size=2048, intermediate_size=10944,
                        moe_intermediate_size=1408, num_hidden_layers=28, num_attention_heads=16,
                        num_key_value_heads=16, n_routed_experts=64, n_shared_experts=2, num_experts_per_tok=6,
                        first_k_dense_replace=1, moe_layer_freq=1)
with needs("moe_param_counts"):
    rows = []
    for name, config in [(f"loaded: {Path(MODEL_IDS['moe']).name}", model.config),
                         ("DeepSeekMoE-16B", DEEPSEEK_MOE_16B), ("Qwen1.5-MoE-A2.7B", Qwen2MoeConfig()),
                         ("Mixtral 8x7B", MixtralConfig()), ("DeepSeek-V3", DeepseekV3Config())]:
        c = moe_param_counts(config)
        rows.append({"model": name, "total (B)": c["total"] / 1e9, "active (B)": c["active"] / 1e9,
                     "active share": c["active"] / c["total"],
                     "resident bf16 (GB)": 2 * c["total"] / 1e9, "read per token bf16 (GB)": 2 * c["active"] / 1e9,
                     "GFLOP per token": 2 * c["active"] / 1e9,
                     "Spark batch-1 tok/s bound": SPARK_BANDWIDTH / (2 * c["active"])})
    display(pd.DataFrame(rows).set_index("model").round(4))
    measured = sum(p.numel() for p in model.parameters())
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    print(f"loaded model: {measured:,} parameters counted on the module, "
          f"{moe_param_counts(model.config)['total']:,} from the config; weights hold {weight_bytes / 2**20:.2f} MiB "
          f"in {DTYPE}")
"""

ACTIVATION_COUNTS = r'''
def expert_activation_counts(router_logits, top_k):
    """(layers, E) int64: how many top-k slots chose each expert, per layer.

    router_logits: tuple of per-layer (tokens, E) tensors, a (layers, tokens, E) tensor, or one (tokens, E) layer.
    """
    ### BEGIN SOLUTION
    if isinstance(router_logits, torch.Tensor):
        layers = [router_logits] if router_logits.dim() == 2 else list(router_logits.unbind(0))
    else:
        layers = list(router_logits)
    num_experts = layers[0].shape[-1]
    rows = []
    for layer in layers:
        probs = torch.softmax(layer.reshape(-1, num_experts).float(), dim=-1)
        experts = torch.topk(probs, top_k, dim=-1).indices
        rows.append(torch.bincount(experts.reshape(-1), minlength=num_experts).to(layers[0].device))
    return torch.stack(rows)
    ### END SOLUTION
'''

TEST_COUNTS = r"""
g = torch.Generator().manual_seed(0)
logits = torch.randn(3, 50, 8, generator=g)  # 3 layers, 50 tokens, 8 experts
counts = expert_activation_counts(logits, 2)
assert counts.shape == (3, 8), f"shape {tuple(counts.shape)}, expected (layers, E) = (3, 8)"
assert counts.dtype == torch.int64, f"dtype {counts.dtype}, expected int64"
assert (counts.sum(-1) == 50 * 2).all(), "each layer's counts must sum to tokens * top_k"
manual = torch.zeros(8, dtype=torch.int64)
for row in logits[1]:
    manual[row.topk(2).indices] += 1
assert torch.equal(counts[1], manual), f"layer 1: {counts[1].tolist()} != {manual.tolist()}"
as_tuple = expert_activation_counts(tuple(logits.reshape(3, 5, 10, 8)), 2)  # (batch, seq, E) per layer
assert torch.equal(as_tuple, counts), "a tuple of per-layer tensors must give the same counts"
assert torch.equal(expert_activation_counts(logits[0].to(torch.bfloat16), 1).sum(), torch.tensor(50))
print("expert_activation_counts: all visible tests passed")
"""

DOMAIN_TABLE = r"""
with needs("expert_activation_counts"):
    k = domain_model.config.num_experts_per_tok
    shares = {}
    for d in DOMAINS:
        logits, ids = router_logits_for(domain_model, domain_tokenizer, Path(DOMAIN_FILES[d]).read_text())
        c = expert_activation_counts(logits, k).double()
        shares[d] = c / c.sum(-1, keepdim=True)  # (layers, E): share of this domain's slots per expert
    n_layers, n_experts = shares[DOMAINS[0]].shape
    fig, axes = plt.subplots(1, n_layers, figsize=(min(4.5 * n_layers, 18), 2.6), squeeze=False)
    for layer in range(n_layers):
        table = torch.stack([shares[d][layer] for d in DOMAINS])  # (domains, E)
        ax = axes[0, layer]
        im = ax.imshow(table, cmap="viridis", aspect="auto", vmin=0)
        ax.set_yticks(range(len(DOMAINS)), DOMAINS)
        ax.set_xlabel("expert")
        ax.set_title(f"MoE layer {layer}")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle("share of each domain's top-k slots per expert (uniform = k/E per slot)")
    fig.tight_layout()
    plt.show()
    last = pd.DataFrame({d: shares[d][-1].numpy() for d in DOMAINS}).T
    last.columns = [f"e{e}" for e in range(n_experts)]
    print("last MoE layer, expert x domain (share of the domain's slots):")
    display(last.round(3))
    spec = (last.max(axis=0) / last.mean(axis=0)).sort_values(ascending=False)
    print("most domain-specific experts (max share / mean share over domains):", spec.head(3).round(2).to_dict())
"""

TOKENS_PER_EXPERT = r"""
from collections import Counter

per_expert = {}
for d in DOMAINS:
    logits, ids = router_logits_for(domain_model, domain_tokenizer, Path(DOMAIN_FILES[d]).read_text())
    top1 = logits[-1].argmax(-1)  # last MoE layer, top-1 expert per token
    for tok, e in zip(ids.tolist(), top1.tolist(), strict=True):
        per_expert.setdefault(e, Counter())[tok] += 1
for e in sorted(per_expert):
    common = ", ".join(repr(domain_tokenizer.decode([t])) for t, _ in per_expert[e].most_common(8))
    print(f"expert {e:2d} ({sum(per_expert[e].values()):4d} tokens): {common}")
"""

HYBRID = r"""
from transformers import AutoModelForCausalLM

try:
    hybrid_cfg = AutoConfig.from_pretrained(resolve_model_id(MODEL_IDS["hybrid"]))
except (OSError, ValueError) as exc:  # the tiny set may be built without a hybrid, or the hub may be out of reach
    hybrid_cfg = None
    print(f"no hybrid config available ({exc}); skipping")
if hybrid_cfg is not None:
    with torch.device("meta"):
        hybrid = AutoModelForCausalLM.from_config(hybrid_cfg)
    plan = []
    for layer in hybrid.model.layers:
        mixer = "attention" if any("attn" in n for n, _ in layer.named_children()) else "mamba"
        ffn = "MoE" if any("experts" in n for n, _ in layer.named_modules()) else "dense"
        plan.append(f"{mixer}+{ffn}")
    total, active = count_params(hybrid)
    print(f"{hybrid_cfg.model_type}: {len(plan)} layers")
    print(" | ".join(plan))
    print(f"total {total:,} parameters, active per token ~{active:,} ({active / total:.0%})")
    del hybrid
"""


def build(out_dir: Path | None = None) -> Path:
    folder = Path(out_dir or SOURCE_ROOT) / LAB_ID
    write_domain_prompts(folder / "prompts")
    return write(folder / f"{LAB_ID}.ipynb", cells(), title="Lab 2.4.3: Exploring a Mixture-of-Experts model")


if __name__ == "__main__":
    print(build())
