"""Lab 2.4.1: Mamba inference. KV cache versus SSM state, and an honest generation benchmark."""

from __future__ import annotations

from common import SOURCE_ROOT, benchmarks_test_cell, labkit, parameters_cell, profile_cell, setup_cell
from nbbuild import code, locked, md, solution, visible_tests, write, written

LAB_ID = "lab-2.4.1-mamba-inference"

INTRO = r"""
# Lab 2.4.1: Mamba inference: what a model carries while it generates

**Learning goals.** After this lab you can
1. compute the memory a Transformer's **KV cache** needs for any context length, batch and precision, including
   the Transformer's own answers to it (grouped-query and multi-query attention, sliding windows);
2. compute the **constant decode state** of a Mamba model and explain why it does not grow with the context;
3. measure **time to first token** (TTFT), **decode throughput** and **peak memory** honestly (warm-up,
   synchronisation, the right clock) and relate them to the roofline of a memory-bound decode.

**The maths.** A self-attention layer with $h$ query heads, $h_{kv}$ key/value heads of size $d_h$ computes, for the
token at position $t$,
$$ \mathrm{attn}(q_t) = \sum_{j \le t} \operatorname{softmax}_j\!\Big(\frac{q_t^\top k_j}{\sqrt{d_h}}\Big)\, v_j . $$
Prefill over $L$ tokens costs $O(L^2 d)$ FLOPs (every pair $(t, j)$), and to generate token $L+1$ the model must keep
every $k_j, v_j$: the **KV cache**,
$$ \text{KV bytes} = 2 \cdot n_\text{layers} \cdot h_{kv} \cdot d_h \cdot L \cdot b \cdot s , $$
($b$ sequences in the batch, $s$ bytes per element: 2 in bf16). It grows linearly with $L$, and every decode step
reads all of it. A selective SSM (Mamba) replaces the sum over the past with a recurrence
$$ x_t = \bar A_t\, x_{t-1} + \bar B_t\, u_t, \qquad y_t = C_t\, x_t , $$
so what it carries is the state $x_t$ ($d_\text{inner} \times N$ per layer) plus the last $d_\text{conv}$ inputs of its
short causal convolution:
$$ \text{Mamba state bytes} = n_\text{layers} \cdot d_\text{inner} \cdot (N + d_\text{conv}) \cdot b \cdot s ,
\qquad d_\text{inner} = \text{expand} \cdot d_\text{model}, $$
the same at token 10 and at token 100 000.

**Why decode speed follows memory.** At batch 1 every new token reads every active weight once and the whole cache
once, and does about 2 FLOPs per weight: far too little arithmetic to keep the tensor cores busy. Decode is
*memory-bound*:
$$ \text{tok/s} \;\lesssim\; \frac{\text{memory bandwidth}}{\text{weight bytes} + \text{cache bytes}} . $$
On a DGX Spark (273 GB/s) a 2.8B model in bf16 (5.6 GB) is capped near 49 tok/s before any cache; a Transformer's
cap then falls as its cache grows, a Mamba's does not. Prefill is the opposite: compute-bound, $\ge 2 \cdot
\text{params} \cdot L$ FLOPs plus the attention term that grows with $L^2$.

**The Transformer's own answers.** *FlashAttention* computes exact attention in tiles held in on-chip SRAM, so the
$L \times L$ score matrix never reaches HBM: less memory traffic and $O(L)$ memory in prefill, same FLOPs, same KV
cache. *Grouped-query attention* (GQA, $h_{kv} < h$) and *multi-query attention* (MQA, $h_{kv} = 1$) shrink the cache
by $h / h_{kv}$. *Sliding-window attention* keeps only the last $W$ tokens: the cache stops growing at $W$.

**What you will do.** Implement `kv_cache_bytes` and `mamba_state_bytes` and check them against the caches the
models really allocate; plot memory against context; implement `benchmark_generation` and measure both
architectures at several context lengths; every measurement is recorded to `benchmarks.json` beside this notebook
(the grader checks those numbers for physical plausibility, so do not edit the file by hand).

**Grading.** Each function you write lives alone in its cell; the visible tests below each one are a subset of the
hidden checks that grade it. Written answers are graded by hand.
"""

KV_SOLUTION = '''
def kv_cache_bytes(config, seq_len, batch_size=1, dtype_bytes=2):
    """Bytes of KV cache a model holds for `seq_len` tokens of each of `batch_size` sequences.

    config: a transformers config object or a dict of its fields (config.json). Fields used:
        num_hidden_layers, num_attention_heads, num_key_value_heads (default: num_attention_heads; GQA/MQA when
        smaller), head_dim (default: hidden_size // num_attention_heads);
        sliding_window (optional; ignored when use_sliding_window is False): a layer keeps at most that many tokens;
        hybrids (Jamba: attn_layer_period / attn_layer_offset; or layers_block_type): only attention layers count;
        a pure Mamba config (model_type "mamba"/"mamba2", or a state_size and no attention heads) has no KV cache: 0;
        MLA (DeepSeek-V2, a kv_lora_rank field): per layer and token it caches kv_lora_rank + qk_rope_head_dim values.
    Returns an int: 2 * attention_layers * kv_heads * head_dim * tokens_kept * batch_size * dtype_bytes.
    """
    ### BEGIN SOLUTION
    def get(*names, default=None):
        for name in names:
            value = config.get(name) if isinstance(config, dict) else getattr(config, name, None)
            if value is not None:
                return value
        return default

    layers = int(get("num_hidden_layers", "n_layer"))
    heads = get("num_attention_heads", "n_head")
    pure_ssm = get("model_type", default="") in ("mamba", "mamba2", "falcon_mamba") or (
        heads is None and get("state_size", "d_state") is not None)
    if pure_ssm:
        return 0
    kinds = get("layers_block_type")
    if isinstance(kinds, (list, tuple)) and len(kinds) == layers:
        attention_layers = sum("attn" in str(k) or "attention" in str(k) for k in kinds)
    elif get("attn_layer_period") is not None:
        period, offset = int(get("attn_layer_period")), int(get("attn_layer_offset", default=0))
        attention_layers = sum(i % period == offset for i in range(layers))
    else:
        attention_layers = layers
    tokens = seq_len
    window = get("sliding_window")
    if window is not None and get("use_sliding_window", default=True):
        tokens = min(seq_len, int(window))
    if get("kv_lora_rank") is not None:
        per_token = int(get("kv_lora_rank")) + int(get("qk_rope_head_dim", default=0))
    else:
        heads = int(heads)
        kv_heads = int(get("num_key_value_heads", default=heads))
        head_dim = int(get("head_dim", default=int(get("hidden_size", "d_model")) // heads))
        per_token = 2 * kv_heads * head_dim
    return int(attention_layers * per_token * tokens * batch_size * dtype_bytes)
    ### END SOLUTION
'''

KV_TESTS = '''
# Visible tests for kv_cache_bytes (the hidden checks use more configs).
assert kv_cache_bytes(mixtral, 1) == 128 * 1024, "Mixtral-8x7B holds 128 KiB of KV cache per token in bf16"
assert kv_cache_bytes(pythia, 1) == 320 * 1024
assert kv_cache_bytes(pythia, 4096, batch_size=2, dtype_bytes=4) == 4 * 4096 * 320 * 1024
assert kv_cache_bytes(mqa, 1000) * 32 == kv_cache_bytes(pythia, 1000), "MQA keeps one K/V head of 32"
assert kv_cache_bytes(mistral, 32768) == kv_cache_bytes(mistral, 4096), "a sliding window caps the cache"
assert kv_cache_bytes({"model_type": "mamba", "num_hidden_layers": 64, "hidden_size": 2560, "state_size": 16},
                      4096) == 0, "a pure Mamba model has no KV cache"

# Against the cache the Transformer really allocates:
model, tok = models["transformer"]
ids = torch.randint(3, model.config.vocab_size, (2, 37), device=DEVICE)
with torch.inference_mode():
    cache = output_cache(model(ids, use_cache=True))
measured = cache_nbytes(cache)
predicted = kv_cache_bytes(model.config, 37, batch_size=2, dtype_bytes=DTYPE.itemsize)
assert predicted == measured, f"predicted {predicted} bytes, the model allocated {measured}"
print(f"kv_cache_bytes: all visible tests passed ({measured} bytes for 2 x 37 tokens)")
'''

MAMBA_SOLUTION = '''
def mamba_state_bytes(config, batch_size=1, dtype_bytes=2):
    """Bytes of decode state (SSM state + convolution window) of a Mamba model; independent of the context length.

    config: a transformers config object or dict. Mamba-1: num_hidden_layers, state_size (N, default 16),
        conv_kernel (d_conv, default 4), d_inner = intermediate_size if set, else expand (default 2) * hidden_size.
        Returns layers * d_inner * (N + d_conv) * batch_size * dtype_bytes.
    Also handled: Mamba-2 (model_type "mamba2" or an n_groups field): per layer d_inner * N + (d_inner + 2 *
        n_groups * N) * d_conv, since its convolution also runs over B and C; hybrids (Jamba fields mamba_d_state,
        mamba_d_conv, mamba_expand, attn_layer_period/offset): only the Mamba layers count; a Transformer: 0.
    """
    ### BEGIN SOLUTION
    def get(*names, default=None):
        for name in names:
            value = config.get(name) if isinstance(config, dict) else getattr(config, name, None)
            if value is not None:
                return value
        return default

    layers = int(get("num_hidden_layers", "n_layer"))
    mtype = get("model_type", default="")
    pure_ssm = mtype in ("mamba", "mamba2", "falcon_mamba") or (
        get("num_attention_heads", "n_head") is None and get("state_size", "d_state") is not None)
    if pure_ssm:
        mamba_layers = layers
    else:
        kinds = get("layers_block_type")
        if isinstance(kinds, (list, tuple)) and len(kinds) == layers:
            mamba_layers = sum(not ("attn" in str(k) or "attention" in str(k)) for k in kinds)
        elif get("attn_layer_period") is not None:
            period, offset = int(get("attn_layer_period")), int(get("attn_layer_offset", default=0))
            mamba_layers = sum(i % period != offset for i in range(layers))
        else:
            return 0
    if mamba_layers == 0:
        return 0
    d_state = int(get("state_size", "d_state", "mamba_d_state", default=16))
    d_conv = int(get("conv_kernel", "d_conv", "mamba_d_conv", default=4))
    if pure_ssm:
        d_inner, expand = get("intermediate_size", "d_inner"), get("expand", default=2)
    else:
        d_inner, expand = get("mamba_d_inner"), get("mamba_expand", "expand", default=2)
    if d_inner is None:
        d_inner = int(expand * int(get("hidden_size", "d_model", "n_embd")))
    d_inner = int(d_inner)
    if mtype == "mamba2" or get("n_groups") is not None:
        per_layer = d_inner * d_state + (d_inner + 2 * int(get("n_groups", default=1)) * d_state) * d_conv
    else:
        per_layer = d_inner * (d_state + d_conv)
    return int(mamba_layers * per_layer * batch_size * dtype_bytes)
    ### END SOLUTION
'''

MAMBA_TESTS = '''
# Visible tests for mamba_state_bytes.
assert mamba_state_bytes(mamba_2_8b) == 13_107_200, "mamba-2.8b's decode state is 13.1 MB in bf16"
assert mamba_state_bytes(mamba_2_8b, batch_size=8, dtype_bytes=4) == 8 * 2 * 13_107_200
assert mamba_state_bytes({**mamba_2_8b, "intermediate_size": 4000}) == 64 * 4000 * 20 * 2, "intermediate_size wins"
assert mamba_state_bytes({"num_hidden_layers": 32, "hidden_size": 2560, "num_attention_heads": 32}) == 0

# Against the state the Mamba model really keeps, for two prompt lengths: it must not grow.
model, tok = models["mamba"]
sizes = []
for length in (5, 50):
    ids = torch.randint(3, model.config.vocab_size, (2, length), device=DEVICE)
    with torch.inference_mode():
        out = model(ids, use_cache=True)
    sizes.append(cache_nbytes(output_cache(out)))
predicted = mamba_state_bytes(model.config, batch_size=2, dtype_bytes=DTYPE.itemsize)
assert sizes[0] == sizes[1] == predicted, f"predicted {predicted} bytes, the model keeps {sizes}"
print(f"mamba_state_bytes: all visible tests passed ({predicted} bytes, the same for 5 and 50 tokens)")
'''

MEMORY_PLOT = '''
# Memory the model carries, against context length, for real configurations (bf16, batch 1).
configs = {
    "pythia-2.8b (MHA, 32 KV heads)": pythia,
    "pythia-2.8b with GQA (8 KV heads)": {**pythia, "num_key_value_heads": 8},
    "pythia-2.8b with MQA (1 KV head)": mqa,
    "Mistral-7B (GQA + 4K sliding window)": mistral,
    "Mixtral-8x7B (GQA)": mixtral,
}
contexts = [2 ** k for k in range(9, 18)]  # 512 .. 128K
fig, ax = plt.subplots(figsize=(8, 4.5))
for label, cfg in configs.items():
    ax.plot(contexts, [kv_cache_bytes(cfg, L) / 1e9 for L in contexts], marker="o", label=f"KV cache: {label}")
ax.plot(contexts, [mamba_state_bytes(mamba_2_8b) / 1e9] * len(contexts), "k--", label="Mamba-2.8b state")
ax.axhline(119.7, color="grey", lw=0.8)
ax.text(contexts[0], 119.7 * 1.15, "DGX Spark: 119.7 GB visible to CUDA", fontsize=8)
ax.set(xscale="log", yscale="log", xlabel="context length (tokens)", ylabel="GB (bf16, batch 1)",
       title="What a model must keep to generate the next token")
ax.legend(fontsize=7)
plt.show()
'''

BENCH_SOLUTION = '''
def benchmark_generation(model, input_ids, new_tokens):
    """Measure greedy generation of `new_tokens` tokens after the prompt `input_ids` (batch, prompt_len).

    Returns dict(ttft_s=..., decode_tok_s=..., peak_mem_bytes=...):
        ttft_s          time to first token: prefill of the prompt + producing the first new token, in seconds;
        decode_tok_s    new tokens per second after the first one: (new_tokens - 1) / time from the first to the
                        last new token (per sequence: do not multiply by the batch size);
        peak_mem_bytes  peak memory during the measured generation (use the lab's PeakMemory helper).
    Measure honestly: warm up first (the first call pays for kernel selection and allocation), synchronise CUDA
    before reading a clock (kernels run asynchronously), force exactly `new_tokens` tokens (no early stop at EOS).
    """
    ### BEGIN SOLUTION
    from transformers.generation.streamers import BaseStreamer

    device = input_ids.device

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    class Clock(BaseStreamer):
        """generate() calls put() once with the prompt, then once per new token: a timestamp per token."""

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
    ### END SOLUTION
'''

BENCH_TESTS = '''
# Visible tests for benchmark_generation.
model, tok = models["mamba"]
ids = torch.randint(3, model.config.vocab_size, (1, 16), device=DEVICE)
result = benchmark_generation(model, ids, 8)
assert set(result) >= {"ttft_s", "decode_tok_s", "peak_mem_bytes"}, f"keys: {sorted(result)}"
assert 0 < result["ttft_s"] < 60 and 0 < result["decode_tok_s"] < 1e6, result
weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
assert result["peak_mem_bytes"] >= weight_bytes, "peak memory must at least hold the weights"
assert isinstance(result["peak_mem_bytes"], int)
print("benchmark_generation: visible tests passed", {k: round(v, 4) for k, v in result.items()})
'''

RUN_BENCH = '''
# Run the benchmark grid and record every configuration to benchmarks.json (median of REPEATS runs).
import statistics

rows = []
for name, (model, tok) in models.items():
    total, active = count_params(model)
    for context in CONTEXTS:
        ids = torch.randint(3, model.config.vocab_size, (BATCH, context), device=DEVICE)
        runs = [benchmark_generation(model, ids, NEW_TOKENS) for _ in range(REPEATS)]
        rows.append(record_benchmark(
            model=MODEL_IDS[name] if PROFILE == "spark" else "tiny-" + Path(MODEL_IDS[name]).name,
            architecture=architecture_of(model.config), params_total=total, params_active=active,
            dtype=str(DTYPE), batch_size=BATCH, context_len=context, new_tokens=NEW_TOKENS,
            ttft_s=statistics.median(r["ttft_s"] for r in runs),
            decode_tok_s=statistics.median(r["decode_tok_s"] for r in runs),
            peak_mem_bytes=max(r["peak_mem_bytes"] for r in runs), device=str(DEVICE),
            repeats=[r["decode_tok_s"] for r in runs], config=model.config,
            kv_or_state_bytes=kv_cache_bytes(model.config, context + NEW_TOKENS, BATCH, DTYPE.itemsize)
            + mamba_state_bytes(model.config, BATCH, DTYPE.itemsize),
        ))
bench = pd.DataFrame(rows)[["model", "architecture", "context_len", "ttft_s", "decode_tok_s", "peak_mem_bytes",
                            "kv_or_state_bytes"]]
bench
'''

BENCH_PLOT = '''
# Plot the measurements against context length.
if not Path("benchmarks.json").exists():
    raise NotImplementedError("no benchmarks.json yet: implement benchmark_generation and run the cell above")
bench = pd.DataFrame(json.loads(Path("benchmarks.json").read_text()))
bench = bench[bench["device"] == str(DEVICE)]
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
for model_name, group in bench.groupby("model"):
    group = group.sort_values("context_len")
    for ax, column in zip(axes, ["ttft_s", "decode_tok_s", "peak_mem_bytes"]):
        ax.plot(group["context_len"], group[column], marker="o", label=model_name)
for ax, title in zip(axes, ["time to first token (s)", "decode tokens/s", "peak memory (bytes)"]):
    ax.set(xscale="log", xlabel="context length", title=title)
axes[0].legend()
plt.tight_layout()
plt.show()
'''

Q_DECODE = (
    r"""
**Question 1 (3 points).** Describe how decode tokens/s and peak memory change with context length for each
architecture in your measurements (on the `spark` profile if you have it; otherwise say what the tiny models can and
cannot show). Explain it with the memory-bound roofline: estimate the upper bound on decode tok/s of pythia-2.8b
at 4K and at 32K tokens and of mamba-2.8b at any length on a DGX Spark (273 GB/s, bf16).
""",
    r"""
Decode reads every weight and the whole cache once per token. pythia-2.8b: weights about 5.6 GB; KV cache
320 KiB/token, so 1.3 GB at 4K and 10.7 GB at 32K: bound 273 / 6.9 ≈ 39 tok/s at 4K and 273 / 16.3 ≈ 17 tok/s at
32K, and peak memory grows by the cache (plus prefill activations). mamba-2.8b: 5.5 GB of weights plus a 13 MB state
at every length: about 49 tok/s, flat, and peak memory flat apart from prefill activations. Measured numbers sit
below the bounds (60-90 % of bandwidth is typical) and the Transformer's tok/s falls with context while Mamba's
stays flat; the tiny CPU models are dominated by Python/kernel-launch overhead, so they show the trend of the cache
size but not the bandwidth bound.
""",
)

Q_ANSWERS = (
    r"""
**Question 2 (3 points).** FlashAttention, GQA/MQA and sliding-window attention are the Transformer's own answers to
the costs you measured. For each, say which cost it reduces (prefill FLOPs, prefill memory traffic, KV cache bytes,
decode bytes per token) and what it gives up. Use `kv_cache_bytes` to quantify GQA with 8 KV heads, MQA and a 4K
window for pythia-2.8b at 32K tokens, and compare with Mamba's state.
""",
    r"""
FlashAttention: exact attention computed tile by tile in SRAM with an online softmax; the $L \times L$ matrix never
goes to HBM, so prefill memory is $O(L)$ and much faster, but the FLOPs stay quadratic and the KV cache and decode
bytes are unchanged; it gives up nothing in accuracy. GQA-8: KV cache /4, 2.7 GB at 32K; MQA: /32, 0.34 GB; both cut
decode bytes per token accordingly, at a small quality cost (usually recovered by uptraining). 4K sliding window:
cache capped at 4K tokens, 1.3 GB, and attention cost $O(L W)$, but no token can attend further back than $W$
(information travels further only through the stack of layers). Mamba-2.8b: 13 MB at any length: it compresses the
whole past into a fixed state, which is what makes exact recall/copying of far-away tokens harder for it.
""",
)

Q_PREFILL = (
    r"""
**Question 3 (2 points).** Prefill costs about $2 \cdot \text{params} \cdot L$ FLOPs for the matmuls plus the attention
scores and mixing, about $2 \cdot L^2 \cdot d_\text{model}$ FLOPs per layer for a causal prompt. For pythia-2.8b
($d_\text{model} = 2560$, about $12 d^2$ weights per layer), at what prompt length does the attention term equal the
matmul term? What does that mean for TTFT at 32K, and for Mamba's TTFT?
""",
    r"""
Per layer: matmuls $2 \cdot 12 d^2 \cdot L$ versus attention $2 L^2 d$: equal at $L = 12 d \approx 30\,700$ tokens.
At 32K the attention doubles the prefill work and TTFT grows faster than linearly (quadratically beyond that);
FlashAttention makes it faster but does not change the FLOPs. Mamba's prefill is a scan that is linear in $L$, so
its TTFT grows linearly with the prompt.
""",
)


REAL_CONFIGS = """
# The configurations of real models (config.json fields) used in the tests and the plot below.
mixtral = {"num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8}
pythia = {"num_hidden_layers": 32, "hidden_size": 2560, "num_attention_heads": 32}  # pythia-2.8b: MHA
mqa = {**pythia, "num_key_value_heads": 1}  # the same model with multi-query attention
mistral = {"num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8,
           "head_dim": 128, "sliding_window": 4096}  # Mistral-7B v0.1
mamba_2_8b = {"model_type": "mamba", "num_hidden_layers": 64, "hidden_size": 2560, "state_size": 16,
              "conv_kernel": 4, "expand": 2}
"""


def cells():
    return [
        md(INTRO),
        parameters_cell(),
        setup_cell(),
        profile_cell(
            {"mamba": "mamba", "transformer": "llama"},
            {"mamba": "state-spaces/mamba-2.8b-hf", "transformer": "EleutherAI/pythia-2.8b"},
            extra=(
                'CONTEXTS = {"tiny": [32, 64, 128], "spark": [4096, 8192, 16384, 32768]}[PROFILE]\n'
                'NEW_TOKENS = {"tiny": 12, "spark": 128}[PROFILE]\n'
                'REPEATS = {"tiny": 2, "spark": 3}[PROFILE]\n'
                "BATCH = 1"
            ),
        ),
        md("Load the two models once (the tiny profile takes a second; the spark profile about a minute)."),
        locked("load-models", "models = {name: load_model(path, DTYPE, DEVICE) for name, path in MODEL_IDS.items()}\n"
               "for name, (model, tok) in models.items():\n"
               "    print(f\"{name}: {type(model).__name__}, {count_params(model)[0] / 1e6:.2f} M parameters\")"),
        md(r"""
        ## Part 1: the KV cache and the SSM state

        Implement `kv_cache_bytes` from the equation above. Real configs add three wrinkles the docstring describes:
        GQA/MQA (`num_key_value_heads`), sliding windows and hybrids that have attention in only some layers.
        """),
        locked("real-configs", REAL_CONFIGS),
        solution("kv_cache_bytes", KV_SOLUTION),
        visible_tests("test_kv_cache_bytes", KV_TESTS, points=3),
        md("Now the Mamba side: the state is a fixed number of numbers per layer, whatever the context."),
        solution("mamba_state_bytes", MAMBA_SOLUTION),
        visible_tests("test_mamba_state_bytes", MAMBA_TESTS, points=2),
        md("""
        Plot both against context length for real configurations: a 2.8B Transformer with full multi-head attention,
        the same with GQA and MQA, a sliding-window model, Mixtral, and mamba-2.8b.
        """),
        code(MEMORY_PLOT),
        md(r"""
        ## Part 2: measuring generation honestly

        A benchmark that forgets the warm-up measures kernel compilation and allocator growth; one that reads the
        clock without `torch.cuda.synchronize()` measures how fast Python *queues* kernels; one that lets generation
        stop at an end-of-sequence token measures fewer tokens than it divides by. Your `benchmark_generation` must
        avoid all three. Split the time into **TTFT** (prefill + first token: compute-bound) and **decode**
        (memory-bound), and report **peak memory** with the lab's `PeakMemory` helper: on CUDA it is
        `torch.cuda.max_memory_allocated` (the only reliable measure on the Spark's unified memory; `nvidia-smi`
        shows nothing there); on CPU it samples the process's resident set size, an upper bound that includes the
        Python runtime. A hint: `model.generate(..., streamer=...)` calls the streamer's `put()` once with the prompt
        and then once per generated token.
        """),
        solution("benchmark_generation", BENCH_SOLUTION),
        visible_tests("test_benchmark_generation", BENCH_TESTS, points=3),
        md("""
        Run the grid: both architectures at each context length of the profile. Each configuration is recorded to
        `benchmarks.json` with the model's config and the per-repeat decode speeds (the grader checks them against
        the hardware's bandwidth and compute).
        """),
        locked("run-benchmarks", RUN_BENCH),
        benchmarks_test_cell(),
        code(BENCH_PLOT),
        md("## Part 3: what the numbers mean"),
        written("decode_roofline", Q_DECODE[0], points=3, model_answer=Q_DECODE[1]),
        written("transformer_answers", Q_ANSWERS[0], points=3, model_answer=Q_ANSWERS[1]),
        written("prefill_quadratic", Q_PREFILL[0], points=2, model_answer=Q_PREFILL[1]),
    ]


def build(source_root=SOURCE_ROOT):
    return write(source_root / LAB_ID / f"{LAB_ID}.ipynb", cells(), title="Lab 2.4.1: Mamba inference")


__all__ = ["LAB_ID", "build", "labkit"]
