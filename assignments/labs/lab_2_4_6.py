"""Lab 2.4.6 (mamba-finetuning): LoRA on a selective state-space model, with a transformer for comparison.

Student functions (grade_id = name): count_trainable_parameters, mamba_lora_targets.
Build: ``python assignments/labs/lab_2_4_6.py`` writes assignments/source/lab-2.4.6-mamba-finetuning/ (the notebook
and the instruction set it fine-tunes on, instructions.jsonl).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common, prompts
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # nbbuild, labkit
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # reference (builder only: not in the notebook)

import labkit
from common import SOURCE_ROOT, benchmarks_test_cell, parameters_cell, profile_cell, setup_cell
from nbbuild import code, locked, md, solution, visible_tests, write, written

from reference.tiny.corpus import instruction_pairs

LAB_ID = "lab-2.4.6-mamba-finetuning"
N_INSTRUCTIONS = 400  # 320 train / 80 eval; the task format is absent from the tiny models' pre-training text

INTRO = r"""
# Lab 2.4.6: Fine-tuning Mamba with LoRA

A pre-trained Mamba is adapted to a new task the same way a Transformer is: freeze the base weights and train small
low-rank adapters (LoRA). The interesting questions are *where* to put the adapters in a selective state-space
block, and what fine-tuning costs in memory compared with a Transformer of the same size.

**Learning goals.** After this lab you can

1. count trainable vs total parameters and say what LoRA saves (gradients and optimizer state);
2. map the projections of a `transformers` Mamba block (`in_proj`, `conv1d`, `x_proj`, `dt_proj`, `A_log`, `D`,
   `out_proj`) to the selective-scan equations and choose LoRA targets that actually train;
3. run a LoRA fine-tune with `peft` on a small instruction set, with a loss log and an evaluation before and after;
4. break fine-tuning memory into weights, gradients, optimizer state and activations, for Mamba and a Transformer,
   and record the training numbers in `benchmarks.json`.

**How to work.** Implement each function in its solution cell (replace `raise NotImplementedError()`), then run the
locked test cell below it. Demo cells skip themselves until the functions they need exist.
"""

MATHS = r"""
## The maths

**LoRA.** A frozen weight $W_0\in\mathbb{R}^{d_{out}\times d_{in}}$ gets a trainable low-rank update:
$$W = W_0 + \frac{\alpha}{r}\,BA,\qquad A\in\mathbb{R}^{r\times d_{in}},\ B\in\mathbb{R}^{d_{out}\times r},\ B=0
\text{ at the start},$$
so a LoRA layer adds $r(d_{in}+d_{out})$ trainable parameters instead of $d_{in}d_{out}$, and the fine-tuned model
starts exactly at the pre-trained one.

**A Mamba block** (hidden size $d$, inner size $d_{in}=2d$, state size $N=16$, $\Delta$-rank $R=\lceil d/16\rceil$):
$$[x;\,z] = W_{\text{in}}h\ \ (\texttt{in\_proj}: d\to 2d_{in}),\qquad
x \leftarrow \mathrm{SiLU}(\mathrm{conv1d}(x))\ \ (\text{depthwise, 4 taps}),$$
$$[\delta;\,B;\,C] = W_x x\ \ (\texttt{x\_proj}: d_{in}\to R+2N),\qquad
\Delta = \mathrm{softplus}(W_{\Delta}\delta + b_\Delta)\ \ (\texttt{dt\_proj}: R\to d_{in}),$$
$$s_t = e^{\Delta_t A}\odot s_{t-1} + \Delta_t B_t x_t,\quad y_t = C_t s_t + D\odot x_t,\quad
A=-e^{A_{\log}},\qquad \text{out} = W_{\text{out}}\,(y\odot \mathrm{SiLU}(z))\ \ (\texttt{out\_proj}: d_{in}\to d).$$
`in_proj` and `out_proj` hold most of the block's parameters ($4d^2$ and $2d^2$); `x_proj` produces the
input-dependent $\Delta, B, C$: the *selection* mechanism; `dt_proj` is already low-rank ($R\times d_{in}$); $A_{\log}$,
$D$ and the conv are small and not `nn.Linear`.

**Which modules can LoRA reach?** `peft` wraps a module, so a LoRA adapter only acts where the model *calls the
module*. Read `MambaMixer` in the installed `transformers`: the pure-torch path calls `self.in_proj(...)`,
`self.x_proj(...)` and `self.out_proj(...)` but computes `self.dt_proj.weight @ time_step` with the raw weight; the
fused CUDA path (`mamba_inner_fn`, with mamba-ssm) passes `x_proj.weight`, `dt_proj.weight` and `out_proj.weight`
straight to the kernel. `peft` therefore refuses `out_proj` and `conv1d` for Mamba models, and an adapter on
`dt_proj` never receives a gradient.

**Fine-tuning memory.** With $P$ parameters of which $P_t$ are trainable, in precision $b$ bytes and AdamW:
$$M \approx \underbrace{bP}_{\text{weights}} + \underbrace{bP_t}_{\text{grads}} + \underbrace{8P_t}_{\text{Adam }m,v
\text{ (fp32)}} + \underbrace{M_{\text{act}}(B, L)}_{\text{saved activations}} .$$
Full fine-tuning has $P_t=P$ (in fp32: $16P$ bytes before activations); LoRA makes $P_t$ a few percent, leaving
weights and activations. Activations grow with batch $B$ and length $L$: a Transformer saves $O(BLd)$ per layer
plus attention scores $O(BHL^2)$ unless a fused attention recomputes them; Mamba's pure-torch scan materialises the
discretised $e^{\Delta A}$ and $\Delta Bx$, $O(B\,L\,d_{in}N)$ per layer ($N=16$ times the block's width), which the
fused kernel avoids by recomputing them in the backward pass.
"""


def cells() -> list:
    return [
        md(INTRO),
        md(MATHS),
        parameters_cell(),
        setup_cell(labkit.measure_generation),
        profile_cell(
            tiny={"mamba": "mamba", "transformer": "llama"},
            spark={"mamba": "state-spaces/mamba-2.8b-hf", "transformer": "EleutherAI/pythia-2.8b"},
            extra=TRAIN_EXTRA,
        ),
        locked("helpers", HELPERS),
        locked("data_and_model", DATA_AND_MODEL),
        md(r"""
        ## 1. Trainable vs total parameters

        Implement `count_trainable_parameters(model) -> (trainable, total)`: the number of parameter elements with
        `requires_grad`, and of all parameter elements (each shared or tied tensor counted once, as `model.parameters()`
        yields it). Return plain ints.
        """),
        solution("count_trainable_parameters", COUNT_TRAINABLE),
        visible_tests("test_count_trainable_parameters", TEST_COUNT, points=3),
        md(r"""
        ## 2. Where the parameters of a Mamba block live
        """),
        code(ANATOMY),
        md(r"""
        ## 3. Choosing LoRA targets

        Implement `mamba_lora_targets(model) -> list[str]`: the module names (the last component, as `peft`'s
        `target_modules` takes them) LoRA should target in a `transformers` Mamba, **found in the model** (inspect
        its mixers; do not just return a constant), each name once, in the order the mixer registers its modules.
        Choose by the maths above and the cell below: a target must be an `nn.Linear` that the mixer calls as a
        module, that `peft` accepts for Mamba, and whose adapter receives a gradient. Never target `lm_head` or
        the embeddings. Justify your choice in Q1.
        """),
        solution("mamba_lora_targets", LORA_TARGETS),
        visible_tests("test_mamba_lora_targets", TEST_TARGETS, points=4),
        md(r"""
        **Evidence.** Put an adapter on every `nn.Linear` of the mixer that `peft` allows, run one backward pass,
        and see which adapters receive a gradient.
        """),
        code(GRADIENT_PROBE),
        md(r"""
        ## 4. Before fine-tuning

        The task (shipped with the lab in `instructions.jsonl`): name the domain of a line, "Name the domain:
        def merge(key, index):" -> `code` (or `maths`, `prose`). We measure the mean loss on the response
        tokens only (the prompt is masked out with label -100), its perplexity, and the exact-match accuracy of
        greedy generations on held-out examples.
        """),
        code(EVAL_BEFORE),
        md(r"""
        ## 5. The LoRA fine-tune

        `peft.get_peft_model` wraps the targets; only the adapters train (AdamW, a constant learning rate, one
        loss value logged per step). The peak memory of the run is measured (CUDA: `max_memory_allocated`; CPU:
        peak resident set size, an upper bound that includes the Python runtime).
        """),
        code(TRAIN),
        code(EVAL_AFTER),
        md(r"""
        ## 6. Memory: Mamba vs Transformer, LoRA vs full fine-tuning

        For one training step at the same batch, we add up weights, gradients and AdamW state from the parameter
        counts, and measure the activations autograd saves for the backward pass (a `saved_tensors_hooks` pack hook
        sums the bytes of every saved tensor that is not a parameter). The Transformer is a model of about the
        same size (tiny: the Llama; spark: Pythia-2.8B next to Mamba-2.8B, both trained on the Pile).
        """),
        code(MEMORY),
        md(r"""
        ## 7. Record the training numbers

        One record per model in `benchmarks.json` (the grader checks them for plausibility): generation speed of
        the fine-tuned model, the peak memory of training, the response perplexity after fine-tuning and the
        training configuration.
        """),
        locked("record", RECORD),
        benchmarks_test_cell(),
        md("## 8. Questions"),
        written(
            "q_lora_targets",
            r"""
            **Q1 (4 points).** Justify the targets your `mamba_lora_targets` returns. For each of `in_proj`,
            `x_proj`, `dt_proj`, `out_proj`, `conv1d`, `A_log` and `D`: what does it do in the selective scan, and why
            is it (or is it not) a good LoRA target in `transformers` + `peft` today? What would you do to adapt the
            excluded ones anyway?
            """,
            points=4,
            model_answer=r"""
            I return `["in_proj", "x_proj"]`. `in_proj` ($d\to 2d_{in}$) makes the SSM input $x$ and the gate $z$
            and holds most of the block's weights; it is always called as a module, so its adapter works on every
            code path. `x_proj` makes the input-dependent $\Delta$ (low-rank part), $B$ and $C$: the selection
            mechanism, i.e. what the state keeps and reads out; adapting it changes *what the model remembers*, which
            is what a new task needs. It is called as a module in the pure-torch path (its adapter gets gradients,
            as the probe shows); the fused mamba-ssm training kernel reads `x_proj.weight` directly, so on that path
            its adapter would stay at zero (harmless, but no gain). `out_proj` ($d_{in}\to d$) would be a fine target
            mathematically, but the fused kernel reads its weight directly, so `peft` refuses it for Mamba models.
            `dt_proj` is already rank $R$ and `transformers` multiplies by `dt_proj.weight` directly in both paths: a
            LoRA adapter there gets no gradient (the probe shows `None`). `conv1d` is a depthwise 4-tap convolution
            (few parameters, not `nn.Linear`, refused by peft); `A_log` ($d_{in}\times N$) and `D` ($d_{in}$) are
            plain parameters, not layers. To adapt the excluded ones: train them directly (set `requires_grad`, or
            `modules_to_save` in `LoraConfig`), they are small; or patch the mixer to call `dt_proj`/`out_proj` as
            modules. Adapters only help where the forward actually runs them.
            """,
        ),
        written(
            "q_memory",
            r"""
            **Q2 (3 points).** Read your memory table. Where does fine-tuning memory go for LoRA vs full
            fine-tuning, and for Mamba vs the Transformer? How do the activations of each architecture scale with
            sequence length, and which would you pick to fine-tune on 32K-token documents on one Spark?
            """,
            points=3,
            model_answer=r"""
            Full fine-tuning needs weights + gradients + two fp32 Adam moments, about 16 bytes per parameter in fp32
            (12 in bf16 weights with fp32 states), so optimizer state dominates at small batch; LoRA shrinks gradients
            and optimizer state to the adapters (a few percent), leaving the frozen weights and the activations. The
            activations are the same for LoRA and full fine-tuning (the backward pass still flows through every
            layer). Mamba's pure-torch path saves the discretised $e^{\Delta A}$ and $\Delta Bx$ for every position,
            $O(BLd_{in}N)$, so on CPU its activations are larger than the similar-size Transformer's at short
            lengths; the fused CUDA kernel recomputes them and saves only $O(BLd_{in})$. Both grow linearly in $L$
            with fused kernels (flash attention for the Transformer; without it attention scores add $O(BHL^2)$,
            which dominates at 32K). For 32K-token documents I would fine-tune Mamba with the fused kernel (linear
            activations, no KV cache, constant state), or a Transformer only with flash attention and activation
            checkpointing; in both cases LoRA plus gradient checkpointing keeps weights + adapters + one layer's
            activations in memory.
            """,
        ),
        written(
            "q_eval",
            r"""
            **Q3 (3 points).** Compare the evaluation before and after the fine-tune (response loss, perplexity,
            exact match, the loss curve). Is the improvement real learning of the task or memorisation, and what
            would you change to make the evaluation trustworthy?
            """,
            points=3,
            model_answer=r"""
            The response loss falls steeply in the first steps: the model first learns the answer format (one of
            three words, then end of sequence), then which word fits which line; exact match goes from 0 % (the
            base model just continues the text) to close to 100 %. The eval lines are held out (generated with the
            same templates but not in the training set), so a gain on them is generalisation of the mapping, not
            memorisation of the training pairs; but the task is narrow and templated (the domains differ in their
            vocabulary, which the pre-trained model already separates), so the eval measures the template, not general
            instruction following. A harder task such as "Write as a call: multiply 7 and 12" -> `mul(7, 12)` shows
            the limit of a tiny model: it learns the format and the names but copies the numbers poorly.
            To trust it: a larger held-out set with new phrasings and
            number ranges, several seeds with error bars, comparing train and eval loss for overfitting, checking
            that general ability (perplexity on ordinary text) did not degrade, and a baseline such as full
            fine-tuning or a prompt-only model.
            """,
        ),
    ]


TRAIN_EXTRA = """\
DATA_FILE = Path("instructions.jsonl")  # shipped with the lab: {"instruction", "response"} per line
TRAIN = {
    "tiny": dict(steps=20, batch_size=12, lr=5e-3, rank=8, alpha=16, n_eval=32, n_generate=12),
    "spark": dict(steps=200, batch_size=8, lr=2e-4, rank=16, alpha=32, n_eval=80, n_generate=40),
}[PROFILE]
if PROFILE == "tiny":
    torch.set_num_threads(1)  # tiny tensors: extra threads only add overhead (and fight over shared cores)"""

HELPERS = r'''
import math

import matplotlib.pyplot as plt
import pandas as pd
from peft import LoraConfig, get_peft_model


''' + labkit.snippet(labkit.needs) + r'''


def prompt_of(example):
    return f"{example['instruction']}\n"  # short on purpose: the tiny profile's scan runs one step per token


def encode(tokenizer, example):
    """(input_ids, labels) lists: prompt tokens are labelled -100 so only the response (+ eos) is learned."""
    prompt = tokenizer(prompt_of(example), add_special_tokens=False).input_ids
    answer = tokenizer(example["response"], add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    return prompt + answer, [-100] * len(prompt) + answer


def collate(tokenizer, examples):
    """Right-padded batch dict(input_ids, attention_mask, labels) on DEVICE."""
    pairs = [encode(tokenizer, ex) for ex in examples]
    width = max(len(ids) for ids, _ in pairs)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = torch.full((len(pairs), width), pad)
    labels = torch.full((len(pairs), width), -100)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)
    for i, (x, y) in enumerate(pairs):
        ids[i, : len(x)], labels[i, : len(y)], mask[i, : len(x)] = torch.tensor(x), torch.tensor(y), 1
    return {k: v.to(DEVICE) for k, v in dict(input_ids=ids, attention_mask=mask, labels=labels).items()}


@torch.no_grad()
def response_loss(model, tokenizer, examples, batch_size=16):
    """Mean cross-entropy over response tokens (token-weighted) and its perplexity."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(examples), batch_size):
        batch = collate(tokenizer, examples[i : i + batch_size])
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        labels = batch["labels"][:, 1:]
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                 ignore_index=-100, reduction="sum")
        total, count = total + loss.item(), count + (labels != -100).sum().item()
    return total / count, math.exp(total / count)


@torch.no_grad()
def exact_match(model, tokenizer, examples, max_new_tokens=12):
    """Share of examples whose greedy continuation, up to the first newline / eos, equals the response."""
    model.eval()
    hits, samples = 0, []
    for ex in examples:
        ids = tokenizer(prompt_of(ex), return_tensors="pt", add_special_tokens=False).input_ids.to(DEVICE)
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=tokenizer.eos_token_id)
        text = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).split("\n")[0].strip()
        hits += text == ex["response"]
        samples.append((ex["instruction"], ex["response"], text))
    return hits / len(examples), samples


def saved_activation_bytes(model, batch):
    """Bytes autograd saves for backward in one forward pass (parameters excluded, each storage counted once)."""
    params = {p.data_ptr() for p in model.parameters()}
    seen, total = set(), 0

    def pack(t):
        nonlocal total
        key = (t.data_ptr(), t.numel(), t.dtype)
        if t.data_ptr() not in params and key not in seen:
            seen.add(key)
            total += t.numel() * t.element_size()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(**batch).loss
    del loss
    return total
'''

# Loading the model (and data) is an experiment, not a definition: the grader's definitions-only run skips it
# (the hidden checks make their own inputs).
DATA_AND_MODEL = r'''
examples = [json.loads(line) for line in DATA_FILE.read_text().splitlines() if line.strip()]
train_set, eval_set = examples[: int(0.8 * len(examples))], examples[int(0.8 * len(examples)):][: TRAIN["n_eval"]]
model, tokenizer = load_model(MODEL_IDS["mamba"], DTYPE, DEVICE)
if tokenizer.pad_token_id is None:
    tokenizer.pad_token = tokenizer.eos_token
print(f"{len(train_set)} training / {len(eval_set)} eval examples, e.g. {train_set[0]}")
'''

COUNT_TRAINABLE = r'''
def count_trainable_parameters(model):
    """(trainable, total) parameter elements of a torch module, as plain ints."""
    ### BEGIN SOLUTION
    trainable = total = 0
    for p in model.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return int(trainable), int(total)
    ### END SOLUTION
'''

TEST_COUNT = r"""
net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2, bias=False))
result = count_trainable_parameters(net)
assert isinstance(result, tuple) and len(result) == 2, "return a (trainable, total) tuple"
assert all(isinstance(v, int) for v in result), "return plain ints"
assert result == (21, 21), f"got {result}, expected (21, 21)"
net[0].weight.requires_grad_(False)
assert count_trainable_parameters(net) == (9, 21), f"got {count_trainable_parameters(net)}: frozen weights do not train"
tied = torch.nn.Module()
tied.a = torch.nn.Linear(5, 5, bias=False)
tied.b = torch.nn.Linear(5, 5, bias=False)
tied.b.weight = tied.a.weight
assert count_trainable_parameters(tied) == (25, 25), "a shared (tied) parameter counts once"
trainable, total = count_trainable_parameters(model)
assert trainable == total == sum(p.numel() for p in model.parameters()), "the loaded Mamba is fully trainable"
print(f"count_trainable_parameters: all visible tests passed ({total:,} parameters in the Mamba)")
"""

ANATOMY = r"""
mixer = model.backbone.layers[0].mixer
cfg = model.config
print(f"d={cfg.hidden_size}, d_inner={cfg.intermediate_size}, N={cfg.state_size}, R={mixer.time_step_rank}, "
      f"layers={cfg.num_hidden_layers}")
rows = []
for name, p in mixer.named_parameters():
    rows.append({"parameter": name, "shape": tuple(p.shape), "elements": p.numel()})
table = pd.DataFrame(rows)
table["share of block"] = (table["elements"] / table["elements"].sum()).round(3)
display(table)
"""

LORA_TARGETS = r'''
def mamba_lora_targets(model):
    """Module names (last component) for peft's target_modules in a transformers Mamba, in registration order."""
    ### BEGIN SOLUTION
    # in_proj: always called as a module. x_proj: called as a module by the torch path (the selection mechanism).
    # Not out_proj / conv1d (peft refuses: the fused kernel reads their weights directly), not dt_proj (its raw
    # weight is multiplied directly in every path, so an adapter would get no gradient).
    wanted = {"in_proj", "x_proj"}
    names = []
    for module in model.modules():
        if type(module).__name__.endswith("Mixer"):
            for name, child in module.named_children():
                linear = isinstance(getattr(child, "base_layer", child), torch.nn.Linear)  # also once peft-wrapped
                if name in wanted and linear and name not in names:
                    names.append(name)
    if not names:
        raise ValueError("no Mamba mixer with in_proj / x_proj found in this model")
    return names
    ### END SOLUTION
'''

TEST_TARGETS = r"""
targets = mamba_lora_targets(model)
assert isinstance(targets, list) and targets and all(isinstance(t, str) for t in targets), "return a list of names"
assert targets == mamba_lora_targets(model), "the order must be deterministic"
assert len(set(targets)) == len(targets), "each name once"
linear_names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
assert set(targets) <= linear_names, f"{set(targets) - linear_names} are not nn.Linear modules of this model"
assert "lm_head" not in targets and "embeddings" not in targets, "adapt the mixers, not the head / embeddings"
assert "in_proj" in targets, "in_proj holds most of the block and is always called as a module"
probe_model = get_peft_model(load_model(MODEL_IDS["mamba"], DTYPE, DEVICE)[0],
                             LoraConfig(r=4, lora_alpha=8, target_modules=targets))
probe_batch = collate(tokenizer, train_set[:2])
probe_model.train()
probe_model(**probe_batch).loss.backward()
no_grad = sorted({n.split(".lora_")[0].rsplit(".", 1)[-1] for n, p in probe_model.named_parameters()
                  if "lora_A" in n and p.grad is None})
assert not no_grad, f"adapters on {no_grad} receive no gradient: they would never train"
del probe_model
print(f"mamba_lora_targets: all visible tests passed: {targets}")
"""

GRADIENT_PROBE = r"""
allowed = ["in_proj", "x_proj", "dt_proj"]  # peft refuses out_proj and conv1d for Mamba models
try:
    get_peft_model(load_model(MODEL_IDS["mamba"], DTYPE, DEVICE)[0], LoraConfig(r=4, target_modules=["out_proj"]))
except ValueError as exc:
    print("peft on out_proj:", str(exc)[:150], "...")
probe = get_peft_model(load_model(MODEL_IDS["mamba"], DTYPE, DEVICE)[0], LoraConfig(r=4, target_modules=allowed))
probe.train()
probe(**collate(tokenizer, train_set[:2])).loss.backward()
for target in allowed:
    grads = [p.grad for n, p in probe.named_parameters() if f"{target}.lora_B" in n]
    norm = sum(g.abs().sum().item() for g in grads if g is not None)
    status = "no gradient" if all(g is None for g in grads) else f"|grad| = {norm:.3g}"
    print(f"LoRA on {target:8s}: {status}")
del probe
"""

EVAL_BEFORE = r"""
loss_before, ppl_before = response_loss(model, tokenizer, eval_set)
em_before, samples_before = exact_match(model, tokenizer, eval_set[: TRAIN["n_generate"]])
print(f"before: response loss {loss_before:.3f}, perplexity {ppl_before:.2f}, exact match {em_before:.0%}")
for instruction, want, got in samples_before[:3]:
    print(f"  {instruction!r}: want {want!r}, got {got!r}")
"""

TRAIN = r"""
with needs("mamba_lora_targets", "count_trainable_parameters"):
    targets = mamba_lora_targets(model)
    base_params = count_trainable_parameters(model)[1]
    lora_config = LoraConfig(r=TRAIN["rank"], lora_alpha=TRAIN["alpha"], lora_dropout=0.0, target_modules=targets)
    peft_model = get_peft_model(model, lora_config)
    trainable, total = count_trainable_parameters(peft_model)
    print(f"LoRA on {targets}: {trainable:,} trainable of {total:,} ({trainable / total:.2%})")
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=TRAIN["lr"])
    generator = torch.Generator().manual_seed(0)
    losses, tokens_seen = [], 0
    peft_model.train()
    start = time.perf_counter()
    with PeakMemory(DEVICE) as train_mem:
        for step in range(TRAIN["steps"]):
            pick = torch.randint(len(train_set), (TRAIN["batch_size"],), generator=generator).tolist()
            batch = collate(tokenizer, [train_set[i] for i in pick])
            loss = peft_model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            tokens_seen += int(batch["attention_mask"].sum())
    train_s = time.perf_counter() - start
    print(f"{TRAIN['steps']} steps in {train_s:.1f} s ({tokens_seen / train_s:.0f} tok/s), "
          f"loss {losses[0]:.3f} -> {losses[-1]:.3f}, peak memory {train_mem.peak_bytes / 2**20:.0f} MiB")
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(losses, label="train loss (per step)")
    ax.axhline(loss_before, color="gray", ls="--", label="eval loss before")
    ax.set_xlabel("step")
    ax.set_ylabel("response cross-entropy")
    ax.set_title("LoRA fine-tune of Mamba")
    ax.legend()
    plt.show()
"""

EVAL_AFTER = r"""
with needs("mamba_lora_targets", "count_trainable_parameters"):
    if "peft_model" not in globals():
        raise NotImplementedError  # the fine-tune cell above was skipped
    loss_after, ppl_after = response_loss(peft_model, tokenizer, eval_set)
    em_after, samples_after = exact_match(peft_model, tokenizer, eval_set[: TRAIN["n_generate"]])
    summary = pd.DataFrame({"response loss": [loss_before, loss_after], "perplexity": [ppl_before, ppl_after],
                            "exact match": [em_before, em_after]}, index=["before", "after"])
    display(summary.round(3))
    for instruction, want, got in samples_after[:3]:
        print(f"  {instruction!r}: want {want!r}, got {got!r}")
    fig, axes = plt.subplots(1, 2, figsize=(7, 2.8))
    axes[0].bar(["before", "after"], [loss_before, loss_after])
    axes[0].set_title("eval response loss")
    axes[1].bar(["before", "after"], [em_before, em_after])
    axes[1].set_title("exact match")
    axes[1].set_ylim(0, 1)
    fig.tight_layout()
    plt.show()
"""

MEMORY = r'''
def finetune_memory(model_id, lora_targets):
    """Memory of one AdamW training step: weights, grads, optimizer state (from counts), activations (measured)."""
    base, _ = load_model(model_id, DTYPE, DEVICE)
    rows = []
    for mode in ("LoRA", "full"):
        net = get_peft_model(base, LoraConfig(r=TRAIN["rank"], target_modules=lora_targets)) if mode == "LoRA" else base
        trainable, total = count_trainable_parameters(net)
        weight_bytes = sum(p.numel() * p.element_size() for p in net.parameters())
        grad_bytes = sum(p.numel() * p.element_size() for p in net.parameters() if p.requires_grad)
        activations = saved_activation_bytes(net, memory_batch)
        rows.append({"model": Path(model_id).name, "architecture": architecture_of(base.config), "mode": mode,
                     "trainable": trainable, "total": total, "weights MiB": weight_bytes / 2**20,
                     "grads MiB": grad_bytes / 2**20, "AdamW MiB": 8 * trainable / 2**20,
                     "activations MiB": activations / 2**20})
        if mode == "LoRA":
            base = net.unload().requires_grad_(True)  # the plain model, all weights trainable, for the full row
    for row in rows:
        row["sum MiB"] = row["weights MiB"] + row["grads MiB"] + row["AdamW MiB"] + row["activations MiB"]
    return rows


with needs("count_trainable_parameters", "mamba_lora_targets"):
    memory_batch = collate(tokenizer, train_set[: TRAIN["batch_size"]])
    memory = pd.DataFrame(finetune_memory(MODEL_IDS["mamba"], mamba_lora_targets(model))
                          + finetune_memory(MODEL_IDS["transformer"], "all-linear"))
    display(memory.set_index(["model", "mode"]).round(2))
    parts = ["weights MiB", "grads MiB", "AdamW MiB", "activations MiB"]
    ax = memory.set_index(memory["model"] + " " + memory["mode"])[parts].plot.barh(stacked=True, figsize=(7, 2.8))
    ax.set_xlabel(f"MiB for one step (batch {TRAIN['batch_size']}, {memory_batch['input_ids'].shape[1]} tokens)")
    ax.set_title("fine-tuning memory")
    plt.tight_layout()
    plt.show()
'''

RECORD = r"""
with needs("count_trainable_parameters", "mamba_lora_targets"):
    if "peft_model" not in globals() or "memory" not in globals():
        raise NotImplementedError  # the fine-tune or the memory cell above was skipped
    prompt_ids = tokenizer(prompt_of(eval_set[0]), return_tensors="pt").input_ids.to(DEVICE)
    speed = measure_generation(peft_model, prompt_ids, new_tokens=16)
    record = record_benchmark(
        model=MODEL_IDS["mamba"], architecture="mamba", params_total=base_params, params_active=base_params,
        dtype=DTYPE, batch_size=1, context_len=prompt_ids.shape[1], new_tokens=16, ttft_s=speed["ttft_s"],
        decode_tok_s=speed["decode_tok_s"], peak_mem_bytes=int(train_mem.peak_bytes), device=DEVICE,
        perplexity=ppl_after, config=peft_model.get_base_model().config,
        notes="LoRA fine-tune (lab 2.4.6): peak_mem_bytes is the training run's; speed is greedy generation after it",
        finetune=dict(targets=targets, rank=TRAIN["rank"], alpha=TRAIN["alpha"],
                      steps=TRAIN["steps"], batch_size=TRAIN["batch_size"], lr=TRAIN["lr"], trainable=trainable,
                      train_s=train_s, train_tok_s=tokens_seen / train_s, loss_first=losses[0],
                      loss_last=losses[-1], eval_loss_before=loss_before, eval_loss_after=loss_after,
                      exact_match_before=em_before, exact_match_after=em_after,
                      memory_table=memory.to_dict(orient="records")),
    )
    print(json.dumps({k: record[k] for k in ("model", "params_total", "ttft_s", "decode_tok_s", "peak_mem_bytes",
                                             "perplexity")}, indent=1))
"""


def write_instructions(folder: Path) -> Path:
    """The lab's fine-tuning set: "Name the domain: <line>" -> code | maths | prose, from the tiny corpus generators."""
    path = folder / "instructions.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(p) + "\n" for p in instruction_pairs(N_INSTRUCTIONS, seed=246, task="domain")))
    return path


def build(out_dir: Path | None = None) -> Path:
    folder = Path(out_dir or SOURCE_ROOT) / LAB_ID
    write_instructions(folder)
    return write(folder / f"{LAB_ID}.ipynb", cells(), title="Lab 2.4.6: Fine-tuning Mamba with LoRA")


if __name__ == "__main__":
    print(build())
