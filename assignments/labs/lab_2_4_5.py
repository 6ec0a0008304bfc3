"""Lab 2.4.5: architecture comparison. Perplexity, speed and memory of Mamba, Transformer, MoE (and a hybrid)."""

from __future__ import annotations

from common import (
    SOURCE_ROOT,
    benchmarks_test_cell,
    course_models_source,
    labkit,
    parameters_cell,
    profile_cell,
    setup_cell,
)
from nbbuild import code, locked, md, solution, visible_tests, write, written

LAB_ID = "lab-2.4.5-architecture-comparison"

INTRO = r"""
# Lab 2.4.5: choosing an architecture: Mamba, Transformer, Mixture-of-Experts, hybrids

**Learning goals.** After this lab you can
1. measure **perplexity** of a causal LM on long text correctly with a sliding window, and say when two
   perplexities are comparable;
2. measure and explain the **quality / speed / memory** trade-offs of a dense Transformer, a Mamba SSM, a sparse
   MoE and a hybrid on the same hardware;
3. write a recommendation: which architecture for which workload, and why hybrids such as **Jamba** and
   **Granite 4.0** mix them.

**Perplexity.** For tokens $x_0 \dots x_{n-1}$,
$$ \mathrm{PPL} = \exp\Big( \frac{1}{n-1} \sum_{t=1}^{n-1} -\log p_\theta(x_t \mid x_{c(t)}, \dots, x_{t-1}) \Big), $$
every token after the first predicted exactly once. A model can only read a bounded window, so long text is
scored with a **sliding window**: targets are taken in blocks of `stride`, and each block is predicted from a
window of at most `max_length` tokens that ends just before its last target. A smaller stride gives every target
more context (lower, more honest perplexity) at the cost of more forward passes. Per-token perplexity depends on
the tokenizer: compare models across tokenizers in **bits per byte**,
$\text{bpb} = \frac{(n-1)\,\ln \mathrm{PPL}}{\ln 2 \cdot \text{bytes}}$.

**Speed and memory, from lab 2.4.1.** Decode is memory-bound: tok/s $\lesssim$ bandwidth / (bytes of *active*
weights + cache). A Transformer's KV cache grows with context; Mamba's state does not. A **Mixture-of-Experts**
layer routes each token to $k$ of $E$ expert MLPs:
$$ y = \sum_{e \in \operatorname{top-}k(\,\operatorname{softmax}(W_r h)\,)} g_e(h)\, \mathrm{FFN}_e(h) , $$
so it stores all experts (**total** parameters decide memory) but computes with only $k$ (**active** parameters
decide FLOPs and, at batch 1, bytes read per token). Load-balancing losses, capacity limits and the router z-loss
(labs 2.4.3 and 2.4.4) keep the experts evenly used. **Hybrids** interleave a few attention layers with many Mamba
layers (Jamba: 1 attention in 8 layers, MoE every other layer; Granite 4.0-H: Mamba-2 with about one attention layer
in ten): most layers carry a constant state, the few attention layers keep exact recall, and the KV cache shrinks by
the attention fraction.

**The models (spark profile).** Three architectures of similar size, plus a hybrid:

| role | checkpoint | parameters | bf16 weights |
|---|---|---|---|
| Mamba | `state-spaces/mamba-2.8b-hf` | 2.77B | 5.5 GB |
| Transformer (Llama architecture, GQA) | `meta-llama/Llama-3.2-3B` (gated: set `HF_TOKEN`) | 3.21B | 6.4 GB |
| MoE (64 experts, top-8) | `allenai/OLMoE-1B-7B-0924` | 6.9B total, 1.3B active | 13.8 GB |
| hybrid (Mamba-2 + attention + MoE) | `ibm-granite/granite-4.0-h-tiny` | 7B total, 1B active | ~14 GB |

The MoE holds about twice the Transformer's weights but computes with well under half of its parameters per
token. Perplexity is measured on WikiText-2 (raw, test split; read with the `datasets` library). The tiny profile
runs the same code on tiny offline models of the same architectures and on its own synthetic prose. Your course may
have chosen other checkpoints (its `models.yaml`): the table your code prints is the truth.

**What you will do.** Implement `perplexity`; measure perplexity, TTFT, decode tok/s and peak memory for each
architecture at several context lengths (recorded to `benchmarks.json`); build the comparison table and plots; write
the comparison report with recommendations.
"""

PPL_SOLUTION = '''
def perplexity(model, input_ids, max_length, stride):
    """Sliding-window perplexity of `input_ids` ((n,) or (1, n) token ids) under a causal LM.

    Every token after the first is predicted exactly once. Targets are taken in blocks of `stride` tokens
    (1 <= stride <= max_length): for the block of targets [s, e) the model reads the window
    ids[max(0, e - 1 - max_length) : e - 1] (at most max_length tokens, ending just before the last target), and the
    logits at the positions of tokens s-1 .. e-2 predict tokens s .. e-1.
    Call the model as model(window_ids).logits with window_ids of shape (1, length) on the model's device (the device
    of its first parameter; CPU if it has none); log-softmax in fp32; sum the NLL over all targets.
    Returns exp(total NLL / (n - 1)) as a Python float.
    """
    ### BEGIN SOLUTION
    ids = input_ids[0] if input_ids.dim() == 2 else input_ids
    n = ids.shape[0]
    if n < 2 or not 1 <= stride <= max_length:
        raise ValueError(f"need n >= 2 and 1 <= stride <= max_length; got n={n}, stride={stride}, "
                         f"max_length={max_length}")
    params = list(model.parameters()) if hasattr(model, "parameters") else []
    ids = ids.to(params[0].device if params else "cpu")
    total = 0.0
    with torch.no_grad():
        for start in range(1, n, stride):
            end = min(start + stride, n)
            begin = max(0, end - 1 - max_length)
            logits = model(ids[begin:end - 1].unsqueeze(0)).logits[0]
            rows = logits[start - 1 - begin:end - 1 - begin]
            compute = torch.float64 if rows.dtype == torch.float64 else torch.float32
            log_probs = torch.log_softmax(rows.to(compute), dim=-1)
            total += -log_probs.gather(1, ids[start:end, None]).to(torch.float64).sum().item()
    return math.exp(total / (n - 1))
    ### END SOLUTION
'''

FAKES = '''
import math
from types import SimpleNamespace


class UnigramLM(torch.nn.Module):
    """A 'model' that ignores its context: the same next-token distribution everywhere. Records window lengths."""

    def __init__(self, probs):
        super().__init__()
        self.log_probs = torch.nn.Parameter(probs.log(), requires_grad=False)
        self.windows = []

    def forward(self, input_ids, **kwargs):
        self.windows.append(input_ids.shape[-1])
        return SimpleNamespace(logits=self.log_probs.expand(*input_ids.shape, -1))
'''

PPL_TESTS = '''
# Visible tests for perplexity.
torch.manual_seed(0)
V, n = 11, 50
probs = torch.softmax(torch.randn(V) * 2, dim=0)
ids = torch.randint(0, V, (1, n))
expected = math.exp(-probs.log()[ids[0, 1:]].double().mean().item())  # every token after the first, once
for max_length, stride in [(8, 4), (8, 8), (8, 1), (16, 5), (64, 49)]:
    fake = UnigramLM(probs)
    got = perplexity(fake, ids, max_length, stride)
    assert isinstance(got, float), type(got)
    assert math.isclose(got, expected, rel_tol=1e-6), f"max_length={max_length} stride={stride}: {got} != {expected}"
    assert max(fake.windows) <= max_length, f"the model read {max(fake.windows)} > max_length tokens"
assert math.isclose(perplexity(UnigramLM(probs), ids[0], 8, 4), expected, rel_tol=1e-6), "(n,) input works too"
uniform = UnigramLM(torch.full((V,), 1 / V))
assert math.isclose(perplexity(uniform, ids, 8, 4), V, rel_tol=1e-6), "a uniform model has perplexity = vocab size"
fake = UnigramLM(probs)
perplexity(fake, ids, max_length=n, stride=n - 1)
assert fake.windows == [n - 1], "one window suffices when it holds the whole text"

# A real model: one window over the whole text is exactly the model's own cross-entropy.
model, tok = models["transformer"]
ids = tok(EVAL_TEXT[:2000], return_tensors="pt").input_ids[:, :40].to(DEVICE)
with torch.no_grad():
    own = math.exp(model(ids, labels=ids).loss.item())
got = perplexity(model, ids, max_length=64, stride=39)
assert math.isclose(got, own, rel_tol=2e-3), f"{got} vs the model's own loss {own}"
print(f"perplexity: all visible tests passed (tiny transformer: {got:.2f})")
'''

MEASURE = '''
# Measure every architecture: perplexity on the evaluation text, then speed and memory at each context length.
import statistics

text_ids = {}
rows = []
for name, model_id in MODEL_IDS.items():
    model, tok = load_model(model_id, DTYPE, DEVICE, trust_remote_code=name in TRUSTED_ROLES)
    ids = tok(EVAL_TEXT, return_tensors="pt").input_ids[:, :PPL_TOKENS].to(DEVICE)
    ppl = perplexity(model, ids, PPL_MAX_LENGTH, PPL_STRIDE)
    n_bytes = len(tok.decode(ids[0]).encode("utf-8"))
    bpb = (ids.shape[1] - 1) * math.log(ppl) / (math.log(2) * n_bytes)
    total, active = count_params(model)
    for context in CONTEXTS:
        prompt = torch.randint(3, model.config.vocab_size, (1, context), device=DEVICE)
        runs = [measure_generation(model, prompt, NEW_TOKENS) for _ in range(REPEATS)]
        rows.append(record_benchmark(
            model=model_id if PROFILE == "spark" else "tiny-" + Path(model_id).name,
            architecture=architecture_of(model.config), params_total=total, params_active=active,
            dtype=str(DTYPE), batch_size=1, context_len=context, new_tokens=NEW_TOKENS,
            ttft_s=statistics.median(r["ttft_s"] for r in runs),
            decode_tok_s=statistics.median(r["decode_tok_s"] for r in runs),
            peak_mem_bytes=max(r["peak_mem_bytes"] for r in runs), device=str(DEVICE),
            perplexity=ppl, bits_per_byte=bpb, repeats=[r["decode_tok_s"] for r in runs], config=model.config,
        ))
    del model
results = pd.DataFrame(rows)
results[["model", "architecture", "params_total", "params_active", "perplexity", "bits_per_byte", "context_len",
         "ttft_s", "decode_tok_s", "peak_mem_bytes"]]
'''

REPORT = '''
# The comparison table (one row per architecture) and the plots the report discusses.
if not Path("benchmarks.json").exists():
    raise NotImplementedError("no benchmarks.json yet: implement perplexity and run the measurement cell above")
results = pd.DataFrame(json.loads(Path("benchmarks.json").read_text()))
results = results[results["device"] == str(DEVICE)]
longest = results[results["context_len"] == results["context_len"].max()].set_index("architecture")
table = pd.DataFrame({
    "model": longest["model"],
    "params total (M)": longest["params_total"] / 1e6,
    "params active (M)": longest["params_active"] / 1e6,
    "perplexity": longest["perplexity"],
    "bits/byte": longest["bits_per_byte"],
    f"TTFT at {results['context_len'].max()} (s)": longest["ttft_s"],
    "decode tok/s": longest["decode_tok_s"],
    "peak memory (GB)": longest["peak_mem_bytes"] / 1e9,
})
display(table.round(3))

fig, axes = plt.subplots(1, 3, figsize=(14, 4))
for arch, group in results.groupby("architecture"):
    group = group.sort_values("context_len")
    axes[0].plot(group["context_len"], group["decode_tok_s"], marker="o", label=arch)
    axes[1].plot(group["context_len"], group["peak_mem_bytes"] / 1e9, marker="o", label=arch)
    axes[2].scatter(group["params_active"].iloc[0] / 1e6, group["perplexity"].iloc[0], s=60, label=arch)
axes[0].set(xscale="log", xlabel="context length", ylabel="decode tokens/s", title="decode speed")
axes[1].set(xscale="log", xlabel="context length", ylabel="GB", title="peak memory")
axes[2].set(xlabel="active parameters (M)", ylabel="perplexity", title="quality per active parameter")
axes[0].legend()
plt.tight_layout()
plt.show()
'''

Q_REPORT = (
    r"""
**Question 1: the comparison report (6 points).** Write a short report (250-400 words) from your table and plots.
(a) Summarise quality, TTFT, decode speed and memory for each architecture and explain each difference from the
mechanism (KV cache vs constant state, total vs active parameters, quadratic vs linear prefill). (b) Recommend an
architecture, with reasons, for: long-document question answering at 32K+ tokens on one DGX Spark; a high-throughput
chat service with short prompts; a memory-limited edge device; a task needing exact recall of details far back in
the context. Say where a hybrid (Jamba, Granite 4.0-H) is the better answer, and which numbers would change your
mind.
""",
    r"""
(a) On the spark profile: Mamba-2.8B (2.77B parameters, 5.5 GB in bf16) and Llama-3.2-3B (3.21B, 6.4 GB) are
about the same size; their tokenizers differ (GPT-NeoX's 50K vocabulary vs Llama 3's 128K), so quality is compared in
bits per byte on WikiText-2, not per-token perplexity. Decode is bandwidth bound: Mamba reads ~5.5 GB per token plus a
13 MB state, ~49 tok/s at most on 273 GB/s at any context; Llama reads 6.4 GB plus a KV cache of 112 KiB per token
(GQA: 8 KV heads x 128 x 28 layers x K and V x 2 bytes), 0.47 GB at 4K and 3.8 GB at 32K, so its bound falls from
~40 to ~27 tok/s and its peak memory grows linearly with context while Mamba's stays flat. TTFT grows super-linearly
for the Transformer (attention is quadratic) and linearly for Mamba. OLMoE-1B-7B holds 6.9B parameters (13.8 GB
resident, twice Llama's) but each token uses 1.3B (2.6 GB read): the quality of a larger model at the per-token cost of
a 1B one, ~105 tok/s bound at short context; but its attention is full multi-head (16 KV heads, 128 KiB per token), so
at 32K its 4.3 GB KV cache outweighs its active weights and the bound drops to ~40 tok/s.
(b) Long-document QA at 32K+ on the Spark: a hybrid (Granite 4.0-H, Jamba) or Mamba: constant or small state keeps
memory and decode speed flat, and the few attention layers of a hybrid restore exact retrieval; a pure Transformer
needs GQA (as Llama 3.2 has) or sliding windows to fit. High-throughput short-prompt chat: an MoE Transformer:
short contexts keep the KV cache small, batching amortises weight reads, and the MoE gives the best quality per
active FLOP (the 128 GB unified memory holds all experts easily). Edge device: a small Mamba (or hybrid) - no growing
cache, predictable memory; an MoE is a poor fit because its total parameters must fit. Exact recall far back
(copying, needle-in-a-haystack, in-context retrieval): attention (Transformer or a hybrid with attention layers);
pure SSMs compress the past into a fixed state and lose exact detail. Evidence that would change the choice: a
Transformer whose decode speed at my context stays near its bound, recall benchmarks where Mamba matches attention,
or a memory budget too small for the MoE's total parameters.
""",
)

Q_MOE = (
    r"""
**Question 2 (2 points).** OLMoE-1B-7B has 6.9B parameters of which about 1.3B are active per token. In bf16,
how much memory do its weights need, and what is the batch-1 decode bound on a DGX Spark (273 GB/s) ignoring the
cache? Compare with a dense 7B model. Why does the advantage shrink at large batch sizes?
""",
    r"""
Weights: 6.9e9 x 2 B = 13.8 GB (all 64 experts of every layer must be resident). At batch 1 a token reads only its
8 routed experts per layer plus attention, routers and embeddings, ~1.3e9 x 2 B = 2.6 GB: bound ~273 / 2.6 ≈ 105
tok/s, against ~20 tok/s for a dense 7B (13.8 GB per token). At large batch different tokens route to different
experts, so every expert's weights are read each step anyway (the union of the chosen experts approaches all 64),
and decode moves towards compute-bound, where the MoE saves FLOPs but not bytes; expert imbalance and all-to-all
communication (on multi-GPU) add overhead.
""",
)

Q_HYBRID = (
    r"""
**Question 3 (2 points).** Jamba interleaves 1 attention layer per 8 layers (the rest Mamba) and uses MoE in every
other layer. Compared with a pure Transformer of the same depth and attention shape, by what factor does its KV
cache shrink, and what does it keep that a pure Mamba model lacks? Use `kv_cache_bytes` / `mamba_state_bytes`
from lab 2.4.1 in your reasoning.
""",
    r"""
Only 1/8 of the layers hold a KV cache, so the cache shrinks 8x (further with GQA: Jamba uses 8 KV heads), while
the Mamba layers add a constant state of a few MB; at 256K context this is what lets Jamba fit on one 80 GB GPU. The
attention layers keep exact, content-addressed access to every earlier token (in-context retrieval, copying,
induction), which a fixed-size SSM state cannot guarantee; MoE adds capacity without adding active FLOPs.
""",
)

Q_PPL = (
    r"""
**Question 4 (2 points).** Your perplexity numbers depend on `max_length`, `stride` and the tokenizer. Explain how
each choice changes the number, and which of your models' perplexities can be compared directly.
""",
    r"""
A longer window gives more context per prediction, so lower perplexity (until the model's trained context is
exceeded); a smaller stride gives each target more context (closer to full-context evaluation) at the cost of more
forward passes; stride = max_length gives the first targets of each block very little context and inflates
perplexity. Per-token perplexity is only comparable between models that share a tokenizer (the tiny models share
one); on the spark profile Llama 3's 128K-token vocabulary cuts WikiText into fewer, harder tokens than Mamba's
GPT-NeoX tokenizer, so compare bits per byte, which divides the same total log-loss by the same number of bytes.
""",
)


EVAL_SETTINGS = '''
CONTEXTS = {"tiny": [16, 64], "spark": [4096, 16384, 32768]}[PROFILE]
NEW_TOKENS = {"tiny": 6, "spark": 128}[PROFILE]
REPEATS = {"tiny": 2, "spark": 3}[PROFILE]
PPL_TOKENS = {"tiny": 400, "spark": 16384}[PROFILE]
PPL_MAX_LENGTH = {"tiny": 64, "spark": 2048}[PROFILE]
PPL_STRIDE = {"tiny": 32, "spark": 1024}[PROFILE]


def load_eval_text():
    """The text perplexity is measured on: the tiny models' held-out synthetic prose, or on the spark profile
    WikiText-2 (raw, test split) read with `datasets` (its documents joined by blank lines, as the Hugging Face
    perplexity guide does). $SPARKGRADE_EVAL_TEXT names a local text file instead (a machine without network)."""
    if os.environ.get("SPARKGRADE_EVAL_TEXT"):
        return Path(os.environ["SPARKGRADE_EVAL_TEXT"]).read_text()
    if PROFILE == "tiny":
        return (MODELS_DIR / "data" / "corpus" / "prose_valid.txt").read_text()
    from datasets import load_dataset  # spark only: `pip install datasets` (the project's "spark" extra)

    return "\\n\\n".join(load_dataset("Salesforce/wikitext", "wikitext-2-raw-v1", split="test")["text"])'''


LOAD_TRANSFORMER = '''
EVAL_TEXT = load_eval_text()  # here, not in the profile cell: loading the profile must not fetch a dataset
models = {"transformer": load_model(MODEL_IDS["transformer"], DTYPE, DEVICE,
                                    trust_remote_code="transformer" in TRUSTED_ROLES)}'''


def cells():
    return [
        md(INTRO),
        parameters_cell(),
        setup_cell(labkit.measure_generation),
        profile_cell(
            {"mamba": "mamba", "transformer": "llama", "moe": "olmoe", "hybrid": "jamba"},
            {"mamba": "state-spaces/mamba-2.8b-hf", "transformer": "meta-llama/Llama-3.2-3B",
             "moe": "allenai/OLMoE-1B-7B-0924", "hybrid": "ibm-granite/granite-4.0-h-tiny"},
            extra=course_models_source() + "\n" + EVAL_SETTINGS,
        ),
        locked("helpers", FAKES + LOAD_TRANSFORMER),
        md(r"""
        ## Part 1: perplexity with a sliding window

        Implement `perplexity` exactly as its docstring says (the hidden checks compare your number with a
        reference to 1e-4 on texts, windows and strides you have not seen). The window rule in a picture, for
        `max_length = 4`, `stride = 2`: targets 1-2 are predicted from tokens 0-1, targets 3-4 from tokens 0-3,
        targets 5-6 from tokens 2-5, and so on.
        """),
        solution("perplexity", PPL_SOLUTION),
        visible_tests("test_perplexity", PPL_TESTS, points=4),
        md(r"""
        ## Part 2: the three architectures (and a hybrid), side by side

        Each model is loaded in turn (the spark profile holds one at a time: at most the MoE's or the hybrid's
        ~14 GB of bf16 weights plus cache), scored on the evaluation text and benchmarked with the lab's
        `measure_generation` (the method you wrote in lab 2.4.1: warm-up, synchronised clocks, TTFT, decode tok/s,
        peak memory). Every configuration goes to
        `benchmarks.json` with its perplexity.
        """),
        locked("measure-architectures", MEASURE),
        benchmarks_test_cell(),
        code(REPORT),
        md("## Part 3: the comparison report"),
        written("comparison_report", Q_REPORT[0], points=6, model_answer=Q_REPORT[1]),
        written("moe_memory", Q_MOE[0], points=2, model_answer=Q_MOE[1]),
        written("hybrids", Q_HYBRID[0], points=2, model_answer=Q_HYBRID[1]),
        written("perplexity_caveats", Q_PPL[0], points=2, model_answer=Q_PPL[1]),
    ]


def build(source_root=SOURCE_ROOT):
    return write(source_root / LAB_ID / f"{LAB_ID}.ipynb", cells(), title="Lab 2.4.5: architecture comparison")
