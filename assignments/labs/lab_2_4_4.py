"""Lab 2.4.4 (moe-router): top-k routing, the auxiliary load-balancing loss, the router z-loss, load imbalance.

Student functions (grade_id = name): top_k_routing, load_balancing_loss, router_z_loss, load_imbalance.
Build: ``python assignments/labs/lab_2_4_4.py`` writes assignments/source/lab-2.4.4-moe-router/.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common, prompts
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # nbbuild, labkit

import labkit
from common import SOURCE_ROOT, parameters_cell, profile_cell, setup_cell
from nbbuild import code, locked, md, solution, visible_tests, write, written
from prompts import write_domain_prompts

LAB_ID = "lab-2.4.4-moe-router"

INTRO = r"""
# Lab 2.4.4: Inside the MoE router

A Mixture-of-Experts layer is only as good as its **router**: the small linear layer that decides, token by token,
which experts run. In this lab you implement the routers and the auxiliary losses that the Mixtral, Qwen2-MoE,
OLMoE and Switch families use, check them against the real `transformers` modules, and look at how a real model
spreads 1000 tokens over its experts.

**Learning goals.** After this lab you can

1. write softmax-then-top-k routing and explain how Mixtral, Qwen2-MoE, Switch and DeepSeek-V3 differ in how they
   turn router scores into expert weights;
2. explain expert **capacity**, the capacity factor and **dropped tokens**;
3. implement the auxiliary **load-balancing loss** $E\sum_e f_e P_e$ exactly as `transformers` does, and say why its
   gradient flows through $P$ only;
4. implement the ST-MoE **router z-loss** and say why it stabilises training;
5. measure load imbalance (coefficient of variation, max/mean, entropy) of a real router and read router weights
   straight out of a `transformers` model.

**How to work.** Implement each function in its solution cell (replace `raise NotImplementedError()`), then run the
locked test cell below it. Demo cells skip themselves until the functions they need exist. The hidden grader calls
your functions with other inputs, so make them general (any leading shape, any float dtype).
"""

MATHS = r"""
## The maths of routing

**Softmax gate.** For a token with hidden state $h\in\mathbb{R}^d$ the router computes logits
$x = W_g h \in \mathbb{R}^E$ (one per expert) and probabilities
$$p_e = \mathrm{softmax}(x)_e = \frac{e^{x_e}}{\sum_{j=1}^{E} e^{x_j}}.$$
**Top-k.** The token goes to the $k$ experts with the largest $p_e$, $S = \mathrm{TopK}(p, k)$, and the layer output is
$$y = \sum_{e\in S} w_e\, \mathrm{FFN}_e(h).$$
Only $k$ of $E$ expert FFNs run per token: **sparse activation**. What $w_e$ is differs between families:

| family | scores | selection | weights $w_e$ for $e\in S$ |
|---|---|---|---|
| Mixtral | softmax over all $E$ (fp32) | top-$k$ ($k=2$) | $p_e / \sum_{j\in S} p_j$ (renormalised, sum 1) |
| Qwen2-MoE, OLMoE | softmax over all $E$ (fp32) | top-$k$ | $p_e$ (`norm_topk_prob=False`: sum < 1) |
| Switch | softmax | top-1 | $p_e$ (the top-1 probability scales the output) |
| DeepSeek-V2 | softmax | group-limited top-$k$ | $p_e$ (no renormalisation) |
| DeepSeek-V3 | $s_e=\sigma(x_e)$ (fp32) | top-$k$ of $s_e + b_e$ (bias: selection only) | $2.5\,s_e/\sum_{j\in S}s_j$ |

Renormalising (Mixtral) makes the output scale independent of how confident the router is; not renormalising
(Qwen2-MoE) keeps that confidence in the output. DeepSeek-V3's bias $b_e$ is nudged up for under-loaded experts and
down for over-loaded ones after each step: balancing **without** an auxiliary loss. Qwen2-MoE's shared expert is
added to every token's output with weight $\sigma(w_s^\top h)$.

**Capacity and dropped tokens.** With $T$ tokens in a batch, each expert has room for
$$C = \left\lceil \frac{T\,k}{E}\cdot \mathrm{CF} \right\rceil$$
token slots, CF being the *capacity factor* (Switch: 1.0 to 1.25). Slots beyond $C$ are **dropped**: that token
skips the expert (its residual passes through unchanged). Fixed capacity gives static shapes (good for TPUs and
expert parallelism); the price is dropped tokens when routing is unbalanced. Mixtral and Qwen2-MoE in
`transformers` never drop (dropless, dynamic shapes).

**Load-balancing loss** (Switch, and `transformers`' `load_balancing_loss_func`). Over $T$ tokens,
$$f_e = \frac{1}{T}\sum_t \mathbb{1}[e\in S_t], \qquad P_e = \frac{1}{T}\sum_t p_{t,e}, \qquad
\mathcal{L}_{\text{aux}} = E\sum_{e=1}^{E} f_e P_e .$$
$f_e$ is the share of top-$k$ slots that chose $e$ (it sums to $k$), $P_e$ the mean probability. Perfectly
balanced routing ($f_e=k/E$, $P_e=1/E$) gives $\mathcal{L}_{\text{aux}}=k$: `transformers` does **not** divide by $k$.
$f_e$ comes from a top-$k$ (a step function of the logits): its gradient is zero almost everywhere, so
$\partial\mathcal{L}/\partial x$ flows only through $P_e$, i.e.
$\partial\mathcal{L}/\partial P_e = E f_e$: experts that are already chosen often get their probability pushed down
hardest. The model adds $0.001\cdot\mathcal{L}_{\text{aux}}$ (`router_aux_loss_coef`) to the LM loss. With an
`attention_mask`, padded tokens are left out of both means.

**Router z-loss** (ST-MoE, Zoph et al. 2022):
$$\mathcal{L}_z = \frac{1}{T}\sum_t \Big(\log\sum_{j} e^{x_{t,j}}\Big)^2 .$$
Softmax ignores a constant shift of the logits, so nothing stops them from drifting to large magnitudes; large
logits make `exp` overflow and bf16 round-off in the router large (bf16 has 8 bits of mantissa: at $|x|\approx 100$
the spacing is 0.5). The z-loss keeps $\log\sum e^{x}$ near 0, i.e. logits small, without changing which expert wins.
Coefficient $10^{-3}$.
"""


def cells() -> list:
    return [
        md(INTRO),
        md(MATHS),
        parameters_cell(),
        setup_cell(),
        profile_cell(
            tiny={"moe": "moe-domains"},
            spark={"moe": "Qwen/Qwen1.5-MoE-A2.7B"},
            extra=DATA_EXTRA,
        ),
        locked("helpers", HELPERS),
        locked("router_model", ROUTER_MODEL),
        md(r"""
        ## 1. Top-k routing

        Implement `top_k_routing(router_logits, top_k, normalize=True) -> (weights, experts)`:

        - `router_logits`: shape $(\dots, E)$, any float dtype; the result has shape $(\dots, k)$ for both outputs.
        - softmax over **all** $E$ experts in fp32 (keep fp64 if the input is fp64), then `torch.topk` (descending);
        - if `normalize`: divide the $k$ weights by their sum (Mixtral); `normalize=False` is Qwen2-MoE's default;
        - return `weights` cast back to the logits' dtype, and `experts` as int64 indices.
        """),
        solution("top_k_routing", TOP_K_ROUTING),
        visible_tests("test_top_k_routing", TEST_TOP_K, points=7),
        md(r"""
        ### Capacity and dropped tokens

        The helper `dispatch_with_capacity` (locked cell above) plays a capacity-limited dispatcher: top-1 choices of
        all tokens are served first, then the second choices, each expert accepting at most $C$ slots. Below, the
        model's real routing of 1000 tokens (first MoE layer) is dispatched at several capacity factors.
        """),
        code(CAPACITY_DEMO),
        md(r"""
        ## 2. The auxiliary load-balancing loss

        Implement `load_balancing_loss(gate_logits, num_experts, top_k, attention_mask=None)` **exactly** as
        `transformers.models.mixtral.modeling_mixtral.load_balancing_loss_func` computes it (read its source in the
        venv: it is short):

        - `gate_logits`: a tuple of per-layer tensors of shape (batch·seq, E) (a list, or one tensor for one layer,
          should work too). All layers' rows are pooled into one $f$ and one $P$.
        - softmax and top-k in the logits' own dtype; counts and means accumulated in fp32;
        - `attention_mask` (batch, seq), 1 for real tokens: the same mask applies to every layer; masked rows count in
          neither $f$ nor $P$;
        - return a 0-dim tensor $E\sum_e f_eP_e$ (balanced routing gives $k$).
        """),
        solution("load_balancing_loss", LOAD_BALANCING),
        visible_tests("test_load_balancing_loss", TEST_LB, points=8),
        md(r"""
        **Where does the gradient go?** The cell below takes the gradient of the loss with respect to the logits and
        compares it with the gradient you get when $f$ is treated as a constant: they are identical, because the
        top-k selection inside $f$ has no gradient.
        """),
        code(GRAD_DEMO),
        md(r"""
        ## 3. The router z-loss

        Implement `router_z_loss(router_logits)`: the mean over tokens of $(\log\sum_j e^{x_{t,j}})^2$, computed in
        fp32 (fp64 stays fp64) and returned as a 0-dim tensor. Accept (tokens, E), (batch, seq, E), or a tuple of
        per-layer tensors (all tokens of all layers pooled into one mean).
        """),
        solution("router_z_loss", Z_LOSS),
        visible_tests("test_router_z_loss", TEST_Z, points=3),
        code(Z_DEMO),
        md(r"""
        ## 4. Measuring load imbalance

        Implement `load_imbalance(counts) -> dict(cv, max_over_mean, entropy)` for a 1-D tensor of per-expert counts
        (top-k slots per expert, e.g. one row of `expert_activation_counts`; a 2-D input is summed over its leading
        dimension first). With $c_e$ the counts, $\bar c$ their mean and $q_e = c_e/\sum_j c_j$:

        - `cv` $= \mathrm{std}(c)/\bar c$ with the **population** std (divide by $E$, `unbiased=False`): 0 when
          balanced, $\sqrt{E-1}$ when one expert takes everything;
        - `max_over_mean` $= \max_e c_e / \bar c$: 1 when balanced, $E$ at worst. With a fixed capacity factor CF,
          tokens are dropped as soon as this exceeds CF;
        - `entropy` $= -\sum_e q_e \ln q_e$ in **nats**, not normalised ($0\ln 0 = 0$): $\ln E$ when balanced, 0 when
          collapsed. Divide by $\ln E$ yourself when you want a 0-1 score.

        Return plain Python floats. Raise `ValueError` if all counts are zero.
        """),
        solution("load_imbalance", LOAD_IMBALANCE),
        visible_tests("test_load_imbalance", TEST_IMBALANCE, points=2),
        md(r"""
        ## 5. A real router over 1000 tokens

        We run 1000 tokens (code, maths and prose) through the model with `output_router_logits=True`. The
        `transformers` 5.x MoE models record the output of every router module (`MixtralTopKRouter`,
        `Qwen2MoeTopKRouter`, ...) into `outputs.router_logits`: a tuple with one (batch·seq, E) tensor per MoE
        layer. From them: the per-expert load of each layer (bars), its imbalance, and both auxiliary losses.
        """),
        code(LOAD_DEMO),
        md(r"""
        ### Router weights, straight from the modules

        In `transformers` 5.x each sparse block is `model.model.layers[i].mlp` with the router at `.mlp.gate` (a
        `*TopKRouter` holding `weight` of shape (E, d)) and the experts fused at `.mlp.experts` (`gate_up_proj`
        (E, 2F, d) and `down_proj` (E, d, F), no per-expert `nn.Linear` any more). Below we pull every router's
        weight out of the model, check that recomputing $x = W_g h$ from the block's input reproduces the recorded
        logits, and compare experts by the cosine similarity of their router rows.
        """),
        code(ROUTER_WEIGHTS_DEMO),
        md("## 6. Questions"),
        written(
            "q_aux_gradient",
            r"""
            **Q1 (3 points).** The load-balancing loss is $E\sum_e f_eP_e$, yet its gradient flows only through $P$.
            Explain why, what role $f$ still plays in the gradient, and what would go wrong if you tried to balance
            the load by minimising $\sum_e f_e^2$ directly.
            """,
            points=3,
            model_answer=r"""
            $f_e$ counts top-k selections: it is piecewise constant in the logits (a step function), so its derivative
            is zero almost everywhere and undefined at the switching points; autograd gives it no gradient (top-k
            indices are integers). $P_e$ is a mean of softmax probabilities, smooth in the logits. The gradient is
            $\partial\mathcal L/\partial P_e = E f_e$: $f$ acts as a *weight*, so experts that currently receive many
            tokens have their mean probability pushed down hardest and under-used experts barely at all; as the
            probabilities shift, the top-k choices (and so $f$) follow. Minimising $\sum_e f_e^2$ alone gives zero
            gradient everywhere, so nothing would be learned (one would need a straight-through or REINFORCE-style
            estimator instead). At balance $f_e=k/E$, $P_e=1/E$ and the loss is $k$, its minimum for a given $k$.
            """,
        ),
        written(
            "q_z_loss",
            r"""
            **Q2 (3 points).** Why does the router z-loss stabilise training, given that the softmax is invariant to
            adding a constant to all logits? Use your z-loss demo: what happens to bf16 round-off as the logits grow?
            """,
            points=3,
            model_answer=r"""
            Because softmax is shift-invariant, the LM loss does not constrain the logits' overall level, and the
            router's logits can drift to large magnitudes (the router gets large gradients early in training and its
            weights grow). Large logits are a numerical problem: $e^{x}$ overflows, and in bf16 (8-bit mantissa) the
            spacing between representable numbers grows with magnitude (0.5 at 100, 2 at 300): small differences
            between experts' logits are rounded away, routing flips erratically from step to step and the
            probabilities saturate to one-hot, whose gradients vanish. The z-loss penalises $(\log\sum_j e^{x_j})^2$,
            which is $\approx \max_j x_j^2$ for large logits, so it keeps logits near 0 where bf16 resolution is fine,
            without forcing a particular expert choice. ST-MoE found it removed training divergences at no quality
            cost (coefficient $10^{-3}$). The demo shows the z-loss growing quadratically with the logit scale and the
            bf16 error of the routing weights growing with it.
            """,
        ),
        written(
            "q_capacity",
            r"""
            **Q3 (3 points).** Using your capacity experiment and load-imbalance numbers: what capacity factor would
            this router need to drop fewer than 1 % of slots, and what does a larger capacity factor cost? How do
            dropless MoE (Mixtral in `transformers`) and DeepSeek-V3's bias-based balancing avoid the trade-off?
            """,
            points=3,
            model_answer=r"""
            A token slot is dropped once its expert has more than $C=\lceil Tk/E\cdot\mathrm{CF}\rceil$ slots, so to
            drop nothing CF must reach the busiest expert's max/mean (the `max_over_mean` printed above; read the
            CF where the dropped-slot curve falls under 1 %: a little below the largest max/mean, since only the
            overflow of the busiest experts is lost). Larger CF costs memory and compute:
            every expert's buffer is padded to $C$ slots, so the expert FFNs process (and the all-to-all in expert
            parallelism moves) CF times the balanced number of tokens, much of it padding. Dropped tokens skip the
            expert and only keep their residual, hurting quality. Dropless MoE (MegaBlocks, Mixtral/Qwen2-MoE in
            `transformers`) uses variable-sized groups per expert (sparse / grouped GEMMs), so nothing is dropped and
            nothing padded, at the price of dynamic shapes. DeepSeek-V3 keeps routing balanced with a per-expert bias
            added only for selection, adjusted after each step by the observed load, so no auxiliary loss distorts
            the LM gradient and the load stays close enough to uniform that no tokens are dropped.
            """,
        ),
    ]


DATA_EXTRA = """\
DOMAINS = ("code", "maths", "prose")
# Text to route: the tiny models' own validation corpus, or the short real-world prompts this lab ships.
DOMAIN_FILES = ({d: MODELS_DIR / "data" / "corpus" / f"{d}_valid.txt" for d in DOMAINS} if PROFILE == "tiny"
                else {d: Path("prompts") / f"{d}.txt" for d in DOMAINS})"""

HELPERS = r'''
import math

import matplotlib.pyplot as plt
import torch.nn.functional as F


''' + labkit.snippet(labkit.needs) + r'''


def dispatch_with_capacity(experts, num_experts, capacity_factor):
    """Capacity-limited dispatch of top-k choices experts (T, k): -> (kept (T, k) bool, capacity C).

    Top-1 choices of all tokens are served first (in token order), then top-2 choices, ...; an expert accepts at
    most C = ceil(T*k/E * capacity_factor) slots and drops the rest (GShard / Switch style).
    """
    tokens, k = experts.shape
    capacity = math.ceil(tokens * k / num_experts * capacity_factor)
    order = experts.t().reshape(-1)  # slot-major: every token's 1st choice, then every 2nd choice
    one_hot = F.one_hot(order, num_experts)
    position = (one_hot.cumsum(0) * one_hot).sum(-1) - 1  # how many earlier slots chose the same expert
    kept = (position < capacity).reshape(k, tokens).t()
    return kept, capacity


def route_text(model, tokenizer, n_tokens=1000, chunk=250):
    """Router logits of n_tokens of mixed-domain text: (tuple of per-layer (n_tokens, E) fp32 tensors, input_ids)."""
    text = "\n".join(Path(DOMAIN_FILES[d]).read_text() for d in DOMAINS)
    ids = tokenizer(text, return_tensors="pt").input_ids[0]
    if ids.numel() < n_tokens:
        ids = ids.repeat(n_tokens // ids.numel() + 1)
    ids = ids[:n_tokens].reshape(-1, chunk).to(DEVICE)  # (n_tokens/chunk, chunk): short rows fit any context
    with torch.no_grad():
        out = model(input_ids=ids, output_router_logits=True)
    return tuple(layer.float().cpu() for layer in out.router_logits), ids

'''

# Loading the model and routing text is an experiment, not a definition: the grader's definitions-only run
# skips it (the hidden checks make their own inputs).
ROUTER_MODEL = r'''
model, tokenizer = load_model(MODEL_IDS["moe"], DTYPE, DEVICE)
cfg = model.config
NUM_EXPERTS = getattr(cfg, "num_local_experts", None) or cfg.num_experts
TOP_K = cfg.num_experts_per_tok
NORMALIZE = getattr(cfg, "norm_topk_prob", True)  # Mixtral has no flag: it always renormalises
router_logits, routed_ids = route_text(model, tokenizer)
print(f"{cfg.model_type}: {len(router_logits)} MoE layers, E={NUM_EXPERTS}, top-{TOP_K}, renormalise={NORMALIZE}; "
      f"router logits per layer {tuple(router_logits[0].shape)}")
'''

TOP_K_ROUTING = r'''
def top_k_routing(router_logits, top_k, normalize=True):
    """Softmax over all experts in fp32, top-k, optional renormalisation.

    router_logits (..., E) -> weights (..., k) in router_logits.dtype, experts (..., k) int64 (descending weight).
    """
    ### BEGIN SOLUTION
    if not 1 <= top_k <= router_logits.shape[-1]:
        raise ValueError(f"top_k must be in 1..{router_logits.shape[-1]}, got {top_k}")
    compute = torch.float64 if router_logits.dtype == torch.float64 else torch.float32
    probs = torch.softmax(router_logits.to(compute), dim=-1)
    weights, experts = torch.topk(probs, top_k, dim=-1)
    if normalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights.to(router_logits.dtype), experts
    ### END SOLUTION
'''

TEST_TOP_K = r"""
from transformers.models.mixtral.configuration_mixtral import MixtralConfig
from transformers.models.mixtral.modeling_mixtral import MixtralTopKRouter
from transformers.models.qwen2_moe.configuration_qwen2_moe import Qwen2MoeConfig
from transformers.models.qwen2_moe.modeling_qwen2_moe import Qwen2MoeTopKRouter

g = torch.Generator().manual_seed(1)
hidden = torch.randn(64, 32, generator=g)

# Mixtral: renormalised top-2, compared with transformers' own router module.
router = MixtralTopKRouter(MixtralConfig(hidden_size=32, num_local_experts=8, num_experts_per_tok=2))
torch.nn.init.normal_(router.weight, generator=g)
with torch.no_grad():
    logits, ref_w, ref_e = router(hidden)
w, e = top_k_routing(logits, 2)
assert w.shape == (64, 2) and e.shape == (64, 2), f"shapes {tuple(w.shape)}, {tuple(e.shape)}: expected (64, 2)"
assert e.dtype == torch.int64, f"experts must be int64 indices, got {e.dtype}"
assert torch.equal(e, ref_e), "experts differ from MixtralTopKRouter's choice"
torch.testing.assert_close(w, ref_w.to(w.dtype), msg="Mixtral weights differ (softmax over all E, then renormalise)")
torch.testing.assert_close(w.sum(-1), torch.ones(64), msg="renormalised weights must sum to 1")

# Qwen2-MoE: top-4, no renormalisation.
router = Qwen2MoeTopKRouter(Qwen2MoeConfig(hidden_size=32, num_experts=8, num_experts_per_tok=4, norm_topk_prob=False))
torch.nn.init.normal_(router.weight, generator=g)
with torch.no_grad():
    logits, ref_w, ref_e = router(hidden)
w, e = top_k_routing(logits, 4, normalize=False)
assert torch.equal(e, ref_e), "experts differ from Qwen2MoeTopKRouter's choice"
torch.testing.assert_close(w, ref_w, msg="normalize=False must return the plain softmax probabilities")
assert (w.sum(-1) < 1).all(), "without renormalisation the k weights sum to less than 1"

# Any leading shape; weights come back in the logits' dtype.
x = torch.randn(2, 5, 8, generator=g).to(torch.bfloat16)
w, e = top_k_routing(x, 2)
assert w.shape == (2, 5, 2) and w.dtype == torch.bfloat16, f"got {tuple(w.shape)} {w.dtype}"
print("top_k_routing: all visible tests passed")
"""

CAPACITY_DEMO = r"""
with needs("top_k_routing"):
    _, chosen = top_k_routing(router_logits[0], TOP_K, normalize=NORMALIZE)
    factors = [0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0]
    dropped = []
    for cf in factors:
        kept, capacity = dispatch_with_capacity(chosen, NUM_EXPERTS, cf)
        dropped.append(1 - kept.float().mean().item())
        print(f"capacity factor {cf:4.2f}: C = {capacity:4d} slots per expert, dropped {dropped[-1]:6.1%} of slots")
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(factors, [100 * d for d in dropped], marker="o")
    ax.set_xlabel("capacity factor")
    ax.set_ylabel("dropped slots (%)")
    ax.set_title(f"{chosen.shape[0]} tokens, E={NUM_EXPERTS}, top-{TOP_K}")
    ax.grid(alpha=0.3)
    plt.show()
"""

LOAD_BALANCING = r'''
def load_balancing_loss(gate_logits, num_experts, top_k, attention_mask=None):
    """transformers' load_balancing_loss_func: E * sum_e f_e * P_e over all layers' (unmasked) rows.

    gate_logits: tuple of per-layer (batch*seq, E) tensors (or one tensor = one layer);
    attention_mask: (batch, seq) with 1 for real tokens, or None. Returns a 0-dim fp32 tensor.
    """
    ### BEGIN SOLUTION
    layers = [gate_logits] if isinstance(gate_logits, torch.Tensor) else list(gate_logits)
    device = layers[0].device
    acc = torch.float64 if layers[0].dtype == torch.float64 else torch.float32
    counts = torch.zeros(num_experts, dtype=acc, device=device)
    prob_sum = torch.zeros(num_experts, dtype=acc, device=device)
    rows = torch.zeros((), dtype=acc, device=device)
    for layer in layers:
        layer = layer.to(device).reshape(-1, num_experts)
        if attention_mask is None:
            mask = torch.ones(layer.shape[0], dtype=acc, device=device)
        else:
            mask = attention_mask.reshape(-1).to(device=device, dtype=acc)
        probs = torch.softmax(layer, dim=-1)  # in the logits' dtype, as transformers
        chosen = torch.topk(probs, top_k, dim=-1).indices
        counts = counts + torch.zeros_like(counts).index_add_(0, chosen.reshape(-1), mask.repeat_interleave(top_k))
        prob_sum = prob_sum + (probs.to(acc) * mask.unsqueeze(-1)).sum(dim=0)
        rows = rows + mask.sum()
    f = counts / rows  # share of top-k slots per expert: sums to k
    p = prob_sum / rows  # mean router probability per expert
    return num_experts * torch.sum(f * p)
    ### END SOLUTION
'''

TEST_LB = r"""
from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

g = torch.Generator().manual_seed(2)
layers = tuple(torch.randn(24, 8, generator=g) * 2 for _ in range(3))
ours = load_balancing_loss(layers, 8, 2)
ref = load_balancing_loss_func(layers, 8, 2)
assert torch.is_tensor(ours) and ours.dim() == 0, "return a 0-dim tensor"
torch.testing.assert_close(ours.float(), ref.float(), msg=f"got {float(ours):.5f}, transformers gives {float(ref):.5f}")

# With padding: 2 sequences x 12 tokens, the last 5 of the second sequence padded.
mask = torch.ones(2, 12, dtype=torch.long)
mask[1, 7:] = 0
ours = load_balancing_loss(layers, 8, 2, attention_mask=mask)
ref = load_balancing_loss_func(layers, 8, 2, attention_mask=mask)
torch.testing.assert_close(ours.float(), ref.float(), msg="attention_mask: padded rows must be left out of f and P")

# Perfectly balanced routing gives k (not 1): 8 tokens, token t prefers experts t and t+4 equally.
balanced = torch.full((8, 8), -10.0)
for t in range(8):
    balanced[t, t % 8] = balanced[t, (t + 4) % 8] = 5.0
torch.testing.assert_close(load_balancing_loss((balanced,), 8, 2).float(), torch.tensor(2.0), atol=1e-3, rtol=1e-3,
                           msg="balanced top-2 routing must give 2 (the loss is not divided by k)")
# Differentiable through the probabilities.
x = layers[0].clone().requires_grad_(True)
load_balancing_loss((x,), 8, 2).backward()
assert x.grad is not None and x.grad.abs().sum() > 0, "the loss must be differentiable w.r.t. the logits (through P)"
print("load_balancing_loss: all visible tests passed")
"""

GRAD_DEMO = r"""
with needs("load_balancing_loss"):
    x = router_logits[0][:200].clone().requires_grad_(True)
    load_balancing_loss((x,), NUM_EXPERTS, TOP_K).backward()
    # The same loss with f computed outside autograd (a constant):
    p = torch.softmax(x.detach(), -1).requires_grad_(False)
    f = F.one_hot(p.topk(TOP_K, -1).indices, NUM_EXPERTS).sum(1).float().mean(0)
    x2 = x.detach().clone().requires_grad_(True)
    (NUM_EXPERTS * (f * torch.softmax(x2, -1).mean(0)).sum()).backward()
    print("max |grad(your loss) - grad(f held constant)| =", (x.grad - x2.grad).abs().max().item())
    print("dL/dP_e = E * f_e for each expert:", [round(v, 2) for v in (NUM_EXPERTS * f).tolist()])
"""

Z_LOSS = r'''
def router_z_loss(router_logits):
    """ST-MoE z-loss: mean over tokens of logsumexp(logits)^2, in fp32 (fp64 stays fp64); a 0-dim tensor.

    router_logits: (tokens, E), (batch, seq, E) or a tuple of per-layer tensors (all tokens pooled).
    """
    ### BEGIN SOLUTION
    layers = [router_logits] if isinstance(router_logits, torch.Tensor) else list(router_logits)
    acc = torch.float64 if layers[0].dtype == torch.float64 else torch.float32
    num_experts = layers[0].shape[-1]
    flat = torch.cat([x.reshape(-1, num_experts).to(device=layers[0].device, dtype=acc) for x in layers])
    return torch.mean(torch.logsumexp(flat, dim=-1) ** 2)
    ### END SOLUTION
'''

TEST_Z = r"""
g = torch.Generator().manual_seed(3)
x = torch.randn(10, 6, generator=g) * 3
expected = (torch.log(torch.exp(x).sum(-1)) ** 2).mean()
z = router_z_loss(x)
assert torch.is_tensor(z) and z.dim() == 0, "return a 0-dim tensor"
torch.testing.assert_close(z, expected, msg=f"got {float(z):.5f}, expected {float(expected):.5f}")
# bf16 logits: computed in fp32, so large logits do not lose precision.
xb = (x * 30).to(torch.bfloat16)
zb = router_z_loss(xb)
assert zb.dtype == torch.float32, f"compute and return in fp32, got {zb.dtype}"
torch.testing.assert_close(zb, (torch.logsumexp(xb.float(), -1) ** 2).mean())
# Pooled over a tuple of layers and over (batch, seq, E).
torch.testing.assert_close(router_z_loss((x[:4], x[4:])), expected)
torch.testing.assert_close(router_z_loss(x.reshape(2, 5, 6)), expected)
# Softmax ignores a shift of the logits; the z-loss does not: it is 0 exactly when logsumexp = 0.
assert router_z_loss(x - x.logsumexp(-1, keepdim=True)).abs() < 1e-6, "logits with logsumexp 0 give z-loss 0"
print("router_z_loss: all visible tests passed")
"""

Z_DEMO = r"""
with needs("router_z_loss", "top_k_routing"):
    x = router_logits[0]
    print(f"model's router, first MoE layer: z-loss = {router_z_loss(x).item():.3f}")
    print("scale  z-loss   max |w_bf16 - w_fp32| of the top-k weights")
    for scale in [1, 4, 16, 64]:
        w32, _ = top_k_routing(x * scale, TOP_K, NORMALIZE)
        w16, _ = top_k_routing((x * scale).to(torch.bfloat16), TOP_K, NORMALIZE)
        print(f"{scale:5d}  {router_z_loss(x * scale).item():8.1f}   {(w16.float() - w32).abs().max().item():.2e}")
"""

LOAD_IMBALANCE = r'''
def load_imbalance(counts):
    """Imbalance of per-expert counts (E,) (a 2-D input is summed over dim 0 first).

    cv = population std / mean; max_over_mean = max / mean; entropy = -sum q ln q (nats), q = counts / sum.
    Returns dict(cv=float, max_over_mean=float, entropy=float).
    """
    ### BEGIN SOLUTION
    c = torch.as_tensor(counts, dtype=torch.float64)
    if c.dim() > 1:
        c = c.reshape(-1, c.shape[-1]).sum(0)
    total = c.sum()
    if total <= 0:
        raise ValueError("load_imbalance needs at least one counted slot")
    mean = c.mean()
    q = c / total
    nz = q[q > 0]
    return {
        "cv": float(c.std(unbiased=False) / mean),
        "max_over_mean": float(c.max() / mean),
        "entropy": float(-(nz * nz.log()).sum()),
    }
    ### END SOLUTION
'''

TEST_IMBALANCE = r"""
res = load_imbalance(torch.tensor([10, 10, 10, 10]))
assert set(res) == {"cv", "max_over_mean", "entropy"}, f"keys {sorted(res)}"
assert all(isinstance(v, float) for v in res.values()), "return plain Python floats"
assert abs(res["cv"]) < 1e-9 and abs(res["max_over_mean"] - 1) < 1e-9, res
assert abs(res["entropy"] - math.log(4)) < 1e-9, f"balanced entropy must be ln(E) = {math.log(4):.4f} nats"
res = load_imbalance(torch.tensor([0, 0, 0, 12]))
assert abs(res["cv"] - math.sqrt(3)) < 1e-9, f"collapsed cv must be sqrt(E-1) (population std), got {res['cv']}"
assert abs(res["max_over_mean"] - 4) < 1e-9 and abs(res["entropy"]) < 1e-9, res
res = load_imbalance(torch.tensor([1, 2, 3, 6]))
q = torch.tensor([1, 2, 3, 6]) / 12
assert abs(res["entropy"] + float((q * q.log()).sum())) < 1e-6, "entropy in nats of counts / counts.sum()"
assert abs(res["cv"] - float(torch.tensor([1.0, 2, 3, 6]).std(unbiased=False) / 3)) < 1e-6, "cv = std / mean"
print("load_imbalance: all visible tests passed")
"""

LOAD_DEMO = r"""
with needs("top_k_routing", "load_imbalance", "load_balancing_loss", "router_z_loss"):
    n_layers = len(router_logits)
    fig, axes = plt.subplots(1, n_layers, figsize=(4 * n_layers, 3), squeeze=False)
    rows = []
    for i, layer in enumerate(router_logits):
        _, chosen = top_k_routing(layer, TOP_K, normalize=NORMALIZE)
        load = torch.bincount(chosen.reshape(-1), minlength=NUM_EXPERTS)
        stats = load_imbalance(load)
        rows.append({"layer": i, **stats, "entropy / ln E": stats["entropy"] / math.log(NUM_EXPERTS)})
        ax = axes[0, i]
        ax.bar(range(NUM_EXPERTS), load.tolist())
        ax.axhline(load.sum().item() / NUM_EXPERTS, color="k", ls="--", lw=1, label="balanced")
        ax.set_title(f"MoE layer {i}: cv={stats['cv']:.2f}")
        ax.set_xlabel("expert")
        ax.set_ylabel("top-k slots")
    axes[0, 0].legend()
    fig.suptitle(f"Expert load over {layer.shape[0]} tokens (top-{TOP_K} of {NUM_EXPERTS})")
    fig.tight_layout()
    plt.show()
    import pandas as pd

    display(pd.DataFrame(rows).set_index("layer").round(3))
    aux = load_balancing_loss(router_logits, NUM_EXPERTS, TOP_K)
    print(f"load-balancing loss over all layers: {aux.item():.4f} (balanced = {TOP_K}); "
          f"router z-loss: {router_z_loss(router_logits).item():.3f}")
"""

ROUTER_WEIGHTS_DEMO = r"""
routers = {name: m for name, m in model.named_modules()
           if name.endswith("mlp.gate") and getattr(m, "weight", None) is not None and m.weight.dim() == 2}
print(f"{len(routers)} router modules, e.g. {next(iter(routers))}: {type(next(iter(routers.values()))).__name__}, "
      f"weight {tuple(next(iter(routers.values())).weight.shape)}")

# Recompute the first router's logits from the hidden states entering its MoE block.
first_name, first_router = next(iter(routers.items()))
block = model.get_submodule(first_name.rsplit(".", 1)[0])
captured = {}
hook = block.register_forward_pre_hook(lambda mod, args: captured.update(h=args[0].detach()))
with torch.no_grad():
    out = model(input_ids=routed_ids[:1], output_router_logits=True)
hook.remove()
h = captured["h"].reshape(-1, captured["h"].shape[-1])
recomputed = h @ first_router.weight.detach().T
print("max |W_g h - recorded router logits| =",
      (recomputed.float() - out.router_logits[0].float()).abs().max().item())

W = first_router.weight.detach().float().cpu()
cos = F.normalize(W, dim=-1) @ F.normalize(W, dim=-1).T
fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2))
im = a1.imshow(cos, cmap="RdBu_r", vmin=-1, vmax=1)
a1.set_title("cosine similarity of router rows")
a1.set_xlabel("expert")
a1.set_ylabel("expert")
fig.colorbar(im, ax=a1)
a2.bar(range(W.shape[0]), W.norm(dim=-1).tolist())
a2.set_title("router row norm per expert")
a2.set_xlabel("expert")
fig.tight_layout()
plt.show()
"""


def build(out_dir: Path | None = None) -> Path:
    folder = Path(out_dir or SOURCE_ROOT) / LAB_ID
    write_domain_prompts(folder / "prompts")
    return write(folder / f"{LAB_ID}.ipynb", cells(), title="Lab 2.4.4: Inside the MoE router")


if __name__ == "__main__":
    print(build())
