"""Lab 2.4.2: the Mamba architecture. The selective scan, its discretisation, its decode step, what it looks at."""

from __future__ import annotations

from common import SOURCE_ROOT, parameters_cell, profile_cell, setup_cell
from nbbuild import code, locked, md, solution, visible_tests, write, written

LAB_ID = "lab-2.4.2-mamba-architecture"

INTRO = r"""
# Lab 2.4.2: inside Mamba: the selective scan

**Learning goals.** After this lab you can
1. derive the discrete recurrence Mamba runs from the continuous state-space model (**zero-order hold** for $A$,
   **Euler** for $B$) and say what the step size $\Delta$ does;
2. implement the **selective scan** (prefill) and its **one-step update** (decode) with mamba-ssm's exact
   semantics, and reproduce a real Mamba block with them;
3. look inside: the state over time, and what an SSM "looks at" compared with attention;
4. explain the **hardware-aware scan** (why the naive scan is memory-bound) and **Mamba-2's SSD** (why a scalar
   decay per head turns the scan into matrix multiplies).

**From continuous to discrete.** A state-space model maps an input $u(t)$ to an output through a state
$x(t) \in \mathbb{R}^N$: $\; x'(t) = A x(t) + B u(t),\; y(t) = C x(t)$. Holding the input constant over a step of
length $\Delta$ (zero-order hold) gives exactly
$$ x_l = \bar A x_{l-1} + \bar B u_l, \qquad \bar A = e^{\Delta A}, \qquad
   \bar B = (\Delta A)^{-1}(e^{\Delta A} - I)\,\Delta B \;\approx\; \Delta B . $$
Mamba keeps the exact $\bar A = \exp(\Delta A)$ (with $A$ diagonal and negative, $0 < \bar A < 1$ for every
$\Delta > 0$: the recurrence can never blow up) and uses the first-order (Euler) $\bar B = \Delta B$, which agrees
with ZOH to first order in $\Delta$.

**Selective.** In S4 the parameters are the same at every position (a linear time-invariant system: a convolution).
Mamba makes $\Delta$, $B$ and $C$ functions of the input, per token:
$\Delta_l = \operatorname{softplus}(W_\Delta u_l + b_\Delta)$, $B_l = W_B u_l$, $C_l = W_C u_l$. A large $\Delta_l$
forgets the past and writes the current token in; a small $\Delta_l$ lets the token pass by and keeps the state.
Per channel $d$ and state index $n$:
$$ x_l[d,n] = e^{\Delta_l[d] A[d,n]}\, x_{l-1}[d,n] + \Delta_l[d]\, B_l[n]\, u_l[d], \qquad
   y_l[d] = \sum_n C_l[n]\, x_l[d,n] + D[d]\, u_l[d], \qquad \text{out} = y \cdot \operatorname{silu}(z). $$

**Hardware-aware scan.** Written naively, the discretised $\bar A, \bar B u$ are tensors of shape
$(b, d, L, N)$: $N = 16$ times larger than the input, written to and read back from GPU memory (HBM). Mamba's kernel
loads $\Delta, A, B, C$ into on-chip SRAM, discretises and scans there (a parallel scan over $L$), and writes only
$y$ $(b, d, L)$; the backward pass recomputes the states instead of storing them.

**Mamba-2 (SSD).** Restrict $A$ to a scalar per head, $A = a\,I$. Then the whole scan is one matrix
$$ y = \big(\underbrace{L}_{L_{ij} = \exp(a \sum_{j<k\le i} \Delta_k)} \circ\; C B^\top\big)\,(\Delta \cdot u), $$
a causal, decayed "attention" matrix: the *state-space duality*. Mamba-2 computes it chunk by chunk: matmuls on
tensor cores inside a chunk, the recurrence only between chunks, and can afford states of 64-256 instead of 16.

**What you will do.** Implement `selective_scan` and `selective_state_update`; check them against each other and
against the Mamba block inside a real checkpoint; plot the state and $\Delta$ over a sentence; compare what the SSM
and attention look at; verify the SSD identity numerically with your own scan.
"""

SCAN_SOLUTION = '''
def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False):
    """Selective scan (Mamba-1 S6), mamba-ssm `selective_scan_ref` semantics.

    Shapes (b batch, d channels, L length, N state size, G groups):
        u, delta, z    (b, d, L)
        A              (d, N) real (negative in a trained model)
        B, C           fixed (d, N) | variable (b, N, L) | grouped (b, G, N, L): channel c uses group c // (d // G)
        D, delta_bias  (d,)
    Steps: compute in fp32 (fp64 if u is fp64); delta += delta_bias[:, None] (before the softplus); if
    delta_softplus: delta = softplus(delta); x_0 = 0 and x_l = exp(delta_l * A) * x_{l-1} + delta_l * B_l * u_l;
    y_l = sum_n C_l * x_l; out = y + u * D; if z is given: out *= silu(z).
    Returns out (b, d, L) in u's dtype, and also last_state (b, d, N) in the compute dtype if return_last_state.
    """
    ### BEGIN SOLUTION
    dtype_in = u.dtype
    compute = torch.float64 if u.dtype == torch.float64 else torch.float32
    u, delta, A = u.to(compute), delta.to(compute), A.to(compute)
    if delta_bias is not None:
        delta = delta + delta_bias.to(compute)[:, None]
    if delta_softplus:
        delta = torch.nn.functional.softplus(delta)
    batch, dim, L = u.shape

    def per_channel(M):
        M = M.to(compute)
        if M.dim() == 3:  # variable (b, N, L): one B_l for all channels
            return M.unsqueeze(1)
        if M.dim() == 4:  # grouped (b, G, N, L): channels share their group's B_l
            return M.repeat_interleave(dim // M.shape[1], dim=1)
        return M  # fixed (d, N)

    B, C = per_channel(B), per_channel(C)
    x = u.new_zeros(batch, dim, A.shape[1])
    ys = []
    for l in range(L):
        d_l = delta[:, :, l, None]  # (b, d, 1)
        B_l = B if B.dim() == 2 else B[..., l]
        C_l = C if C.dim() == 2 else C[..., l]
        x = torch.exp(d_l * A) * x + d_l * B_l * u[:, :, l, None]
        ys.append((x * C_l).sum(-1))
    y = torch.stack(ys, dim=-1) if ys else u.new_zeros(batch, dim, 0)
    out = y if D is None else y + u * D.to(compute)[:, None]
    if z is not None:
        out = out * torch.nn.functional.silu(z.to(compute))
    out = out.to(dtype_in)
    return (out, x) if return_last_state else out
    ### END SOLUTION
'''

MIXER_HELPER = '''
def mixer_scan_inputs(mixer, hidden):
    """The selective-scan arguments a transformers MambaMixer computes from hidden (b, L, d_model), in fp32.

    in_proj -> (u, z); u -> causal depthwise conv -> silu; x_proj(u) -> (dt_low_rank, B, C); delta = dt_proj.weight @
    dt_low_rank (its bias goes in as delta_bias, softplus applied inside the scan); A = -exp(A_log).
    """
    L = hidden.shape[1]
    projected = mixer.in_proj(hidden).transpose(1, 2)  # (b, 2 * d_inner, L)
    u, z = projected.chunk(2, dim=1)
    u = torch.nn.functional.conv1d(u, mixer.conv1d.weight, mixer.conv1d.bias, padding=mixer.conv1d.padding[0],
                                   groups=u.shape[1])[..., :L]
    u = torch.nn.functional.silu(u)
    dt, B, C = torch.split(mixer.x_proj(u.transpose(1, 2)),
                           [mixer.time_step_rank, mixer.ssm_state_size, mixer.ssm_state_size], dim=-1)
    delta = mixer.dt_proj.weight @ dt.transpose(1, 2)  # (b, d_inner, L)
    args = dict(u=u, delta=delta, A=-torch.exp(mixer.A_log.float()), B=B.transpose(1, 2), C=C.transpose(1, 2),
                D=mixer.D, z=z, delta_bias=mixer.dt_proj.bias)
    return {**{k: v.detach().float() for k, v in args.items()}, "delta_softplus": True}


TEXT = ("The cat sat on the mat because the mat was warm. Later the cat saw a bird, and the bird flew away "
        "before the cat could move. The mat stayed warm all afternoon.")
'''

SCAN_TESTS = '''
# Visible tests for selective_scan (the hidden checks compare with the reference on many random shapes).
import math

torch.manual_seed(0)
# 1. A scalar example worked by hand: A = -1, B = C = 1, delta = 0.5, u = 1, 2, 3.
u = torch.tensor([[[1.0, 2.0, 3.0]]])
out, last = selective_scan(u, torch.full_like(u, 0.5), -torch.ones(1, 1), torch.ones(1, 1), torch.ones(1, 1),
                           return_last_state=True)
x1 = 0.5
x2 = math.exp(-0.5) * x1 + 0.5 * 2
x3 = math.exp(-0.5) * x2 + 0.5 * 3
assert torch.allclose(out, torch.tensor([[[x1, x2, x3]]]), atol=1e-6), out
assert torch.allclose(last, torch.tensor([[[x3]]]), atol=1e-6)

# 2. Dtypes and shapes: out in u's dtype, last_state (b, d, N) in fp32.
b, d, L, N = 2, 8, 12, 4
u = torch.randn(b, d, L, dtype=torch.bfloat16)
delta = torch.rand(b, d, L)
A = -torch.rand(d, N) - 0.5
Bv, Cv = torch.randn(b, N, L), torch.randn(b, N, L)
out, last = selective_scan(u, delta, A, Bv, Cv, return_last_state=True)
assert out.shape == (b, d, L) and out.dtype == torch.bfloat16
assert last.shape == (b, d, N) and last.dtype == torch.float32

# 3. delta_bias is added before the softplus; D and z act on the output.
u = torch.randn(b, d, L)
bias, D, z = torch.randn(d), torch.randn(d), torch.randn(b, d, L)
plain = selective_scan(u, torch.nn.functional.softplus(delta + bias[:, None]), A, Bv, Cv)
full = selective_scan(u, delta, A, Bv, Cv, D=D, z=z, delta_bias=bias, delta_softplus=True)
assert torch.allclose(full, (plain + u * D[:, None]) * torch.nn.functional.silu(z), atol=1e-5)

# 4. Fixed, variable and grouped B/C agree where they describe the same thing.
Bf, Cf = torch.randn(N), torch.randn(N)
same_everywhere = selective_scan(u, delta, A, Bf[None, :, None].expand(b, N, L), Cf[None, :, None].expand(b, N, L))
fixed = selective_scan(u, delta, A, Bf.expand(d, N), Cf.expand(d, N))
assert torch.allclose(same_everywhere, fixed, atol=1e-5), "fixed (d, N) B/C must equal the same B/C at every step"
assert torch.allclose(selective_scan(u, delta, A, Bv[:, None], Cv[:, None]), selective_scan(u, delta, A, Bv, Cv),
                      atol=1e-6), "one group (b, 1, N, L) is the variable case"
Bg, Cg = torch.randn(b, 2, N, L), torch.randn(b, 2, N, L)
grouped = selective_scan(u, delta, A, Bg, Cg)
halves = [selective_scan(u[:, s], delta[:, s], A[s], Bg[:, g], Cg[:, g]) for g, s in
          enumerate([slice(0, d // 2), slice(d // 2, d)])]
assert torch.allclose(grouped, torch.cat(halves, dim=1), atol=1e-5), "channel c uses group c // (d // G)"

# 5. Your scan reproduces the first Mamba block of the checkpoint (fp32 copy of one layer).
import copy

model, tok = models["mamba"]
ids = tok(TEXT, return_tensors="pt").input_ids[:, :48].to(DEVICE)
layer = copy.deepcopy(model.backbone.layers[0]).float()
with torch.inference_mode():
    hidden = layer.norm(model.backbone.embeddings(ids).float())
    expected = layer.mixer(hidden)
    mine = layer.mixer.out_proj(selective_scan(**mixer_scan_inputs(layer.mixer, hidden)).transpose(1, 2))
assert torch.allclose(mine, expected, rtol=6e-4, atol=2e-3), (mine - expected).abs().max()
print("selective_scan: all visible tests passed")
'''

UPDATE_SOLUTION = '''
def selective_state_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    """One decode step of the selective scan: update `state` IN PLACE and return this step's output.

    Shapes: state (b, d, N); x, dt, z (b, d); A (d, N); B, C (b, N), or grouped (b, G, N); D, dt_bias (d,).
    The same maths as one step of selective_scan, computed in fp32 (fp64 for an fp64 state); the new state is
    written back into `state` in its own dtype; the output (b, d) is in x's dtype.
    """
    ### BEGIN SOLUTION
    compute = torch.float64 if state.dtype == torch.float64 else torch.float32
    dim = x.shape[1]
    delta = dt.to(compute)
    if dt_bias is not None:
        delta = delta + dt_bias.to(compute)
    if dt_softplus:
        delta = torch.nn.functional.softplus(delta)

    def per_channel(M):
        M = M.to(compute)
        return M.repeat_interleave(dim // M.shape[1], dim=1) if M.dim() == 3 else M[:, None, :]

    new_state = state.to(compute) * torch.exp(delta[..., None] * A.to(compute)) \\
        + (delta * x.to(compute))[..., None] * per_channel(B)
    state.copy_(new_state.to(state.dtype))
    out = (new_state * per_channel(C)).sum(-1)
    if D is not None:
        out = out + x.to(compute) * D.to(compute)
    if z is not None:
        out = out * torch.nn.functional.silu(z.to(compute))
    return out.to(x.dtype)
    ### END SOLUTION
'''

UPDATE_TESTS = '''
# Visible tests for selective_state_update.
torch.manual_seed(1)
b, d, L, N = 2, 8, 10, 4
u, delta, z = torch.randn(b, d, L), torch.randn(b, d, L), torch.randn(b, d, L)
A, D, bias = -torch.rand(d, N) - 0.5, torch.randn(d), torch.randn(d)
for Bs, Cs in [(torch.randn(b, N, L), torch.randn(b, N, L)), (torch.randn(b, 2, N, L), torch.randn(b, 2, N, L))]:
    state = torch.zeros(b, d, N)
    steps = []
    for l in range(L):
        steps.append(selective_state_update(state, u[..., l], delta[..., l], A, Bs[..., l], Cs[..., l], D=D,
                                            z=z[..., l], dt_bias=bias, dt_softplus=True))
    out, last = selective_scan(u, delta, A, Bs, Cs, D=D, z=z, delta_bias=bias, delta_softplus=True,
                               return_last_state=True)
    assert steps[0].shape == (b, d), "one output per channel"
    assert torch.allclose(torch.stack(steps, -1), out, atol=1e-5), "L decode steps must reproduce the scan"
    assert torch.allclose(state, last, atol=1e-5), "the state must be updated in place"

state16 = torch.zeros(b, d, N, dtype=torch.bfloat16)
y = selective_state_update(state16, u[..., 0].bfloat16(), delta[..., 0], A, torch.randn(b, N), torch.randn(b, N))
assert y.dtype == torch.bfloat16 and state16.dtype == torch.bfloat16 and state16.abs().sum() > 0
print("selective_state_update: all visible tests passed")
'''

STATE_PLOT = '''
# The state of the first Mamba block over a sentence: |x_l| per channel, and the step size delta per channel.
model, tok = models["mamba"]
ids = tok(TEXT, return_tensors="pt").input_ids[:, :64].to(DEVICE)
layer = copy.deepcopy(model.backbone.layers[0]).float()
with torch.inference_mode():
    hidden = layer.norm(model.backbone.embeddings(ids).float())
    args = mixer_scan_inputs(layer.mixer, hidden)
    state = torch.zeros(1, args["u"].shape[1], args["A"].shape[1], device=hidden.device)
    norms = []
    for l in range(ids.shape[1]):
        selective_state_update(state, args["u"][..., l], args["delta"][..., l], args["A"], args["B"][..., l],
                               args["C"][..., l], D=args["D"], z=args["z"][..., l], dt_bias=args["delta_bias"],
                               dt_softplus=True)
        norms.append(state[0].norm(dim=-1).cpu())  # (d_inner,)
channels = slice(0, 64)
step = torch.nn.functional.softplus(args["delta"][0] + args["delta_bias"][:, None]).cpu()  # (d_inner, L)
tokens = [tok.decode([t]) for t in ids[0].tolist()]
fig, axes = plt.subplots(2, 1, figsize=(12, 6), sharex=True)
axes[0].imshow(torch.stack(norms, 1)[channels], aspect="auto", cmap="magma")
axes[0].set(ylabel="channel", title="|state| per channel over the sentence (first 64 channels)")
axes[1].imshow(step[channels], aspect="auto", cmap="viridis")
axes[1].set(ylabel="channel", title="step size Δ: large = write this token in and forget, small = keep the state")
axes[1].set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=7)
plt.tight_layout()
plt.show()
'''

LOOKS_AT = '''
# What the output at position i "looks at": attention weights vs the SSM's implicit weights
#   M[i, j] = sum_n C_i[n] * exp(sum_{j<k<=i} Δ_k A[n]) * Δ_j B_j[n]     (per channel; averaged |.| over channels)
def ssm_implicit_attention(args, channels=256):
    step = torch.nn.functional.softplus(args["delta"][0, :channels] + args["delta_bias"][:channels, None])  # (d, L)
    A, B, C = args["A"][:channels], args["B"][0], args["C"][0]  # (d, N), (N, L), (N, L)
    S = torch.cumsum(step[:, :, None] * A[:, None, :], dim=1)  # (d, L, N): sum_{k<=i} Δ_k A
    decay = torch.exp((S[:, :, None, :] - S[:, None, :, :]).clamp(max=0))  # (d, i, j, N)
    M = torch.einsum("ni,dijn,dj,nj->dij", C, decay, step, B)
    return M.abs().mean(0).tril()


transformer, _ = models["transformer"]
transformer.set_attn_implementation("eager")  # the fused kernels do not return the weights
with torch.inference_mode():
    attention = transformer(ids, output_attentions=True).attentions[0][0].float().mean(0).cpu()  # layer 0, (L, L)
    implicit = ssm_implicit_attention(args).cpu()
implicit = implicit / implicit.sum(-1, keepdim=True)
fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
axes[0].imshow(attention, cmap="Blues")
axes[0].set(title="attention, layer 0 (mean over heads)", xlabel="key position j", ylabel="query position i")
axes[1].imshow(implicit, cmap="Greens")
axes[1].set(title="Mamba block 0: implicit weights (normalised)", xlabel="input position j")
for name, M in [("attention", attention), ("SSM", implicit)]:
    back = [torch.diagonal(M, -k).mean().item() for k in range(M.shape[0] // 2)]
    axes[2].plot(back, label=name)
axes[2].set(yscale="log", xlabel="distance i - j (tokens back)", title="mean weight on a token k positions back")
axes[2].legend()
plt.tight_layout()
plt.show()
'''

SSD_DEMO = '''
# Mamba-2's state-space duality, checked with YOUR scan: with A a scalar per channel (all N entries equal),
# the scan is a masked matrix product y = (Lmask * (C^T B)) (Δ u) per channel.
torch.manual_seed(2)
b, d, L, N = 1, 3, 20, 8
u, step = torch.randn(b, d, L), torch.rand(b, d, L) * 0.5
a = -torch.rand(d) - 0.1
Bv, Cv = torch.randn(b, N, L), torch.randn(b, N, L)
scan = selective_scan(u, step, a[:, None].expand(d, N), Bv, Cv)
S = torch.cumsum(step * a[None, :, None], dim=-1)  # (b, d, L)
Lmask = torch.exp(S[..., :, None] - S[..., None, :]).tril()  # (b, d, i, j) = exp(a * sum_{j<k<=i} Δ_k)
CB = torch.einsum("bni,bnj->bij", Cv, Bv)  # (b, i, j): the "attention scores" C_i . B_j
dual = torch.einsum("bdij,bij,bdj->bdi", Lmask, CB, step * u)
print("max |scan - matrix form| =", (scan - dual).abs().max().item())
assert torch.allclose(scan, dual, atol=1e-4)
'''

Q_DISCRETE = (
    r"""
**Question 1 (3 points).** Derive the zero-order-hold $\bar B$ for a scalar $A = a < 0$ and show that it equals the
Euler $\Delta B$ to first order in $\Delta$. Why does Mamba keep the exact exponential for $A$? What do $\Delta \to 0$
and $\Delta \to \infty$ do to the state?
""",
    r"""
With $u$ held constant over the step, $x(\Delta) = e^{a\Delta} x(0) + \int_0^\Delta e^{a(\Delta - s)} ds\, B u =
e^{a\Delta} x(0) + \frac{e^{a\Delta} - 1}{a} B u$, so $\bar B = \frac{e^{a\Delta}-1}{a} B = (\Delta + a\Delta^2/2 +
\dots) B = \Delta B + O(\Delta^2)$. The exponential for $A$ keeps $0 < \bar A < 1$ for every $\Delta > 0$ when
$a < 0$: the recurrence is stable for any step size, and the decay is exact, while Euler for $A$ ($1 + \Delta a$)
goes negative or explodes for large $\Delta$. The error in $\bar B$ only rescales the input, which the learned
$B$ absorbs. $\Delta \to 0$: $\bar A \to 1$, $\bar B \to 0$: the token is ignored and the state kept; $\Delta \to
\infty$: $\bar A \to 0$: the state is reset and dominated by the current token (a gate, like an RNN's).
""",
)

Q_SELECT = (
    r"""
**Question 2 (2 points).** Using your two plots (state/$\Delta$ over time, and what each model looks at): how does
selectivity show up, and how does the SSM's way of using the past differ from attention's? (Name what each is good
and bad at; the tiny models are untrained, so reason from the structure; the `spark` profile shows trained
behaviour.)
""",
    r"""
$\Delta$ varies per token and channel: where it is large the state norm jumps (the token is written in) and old
content decays; where small the state carries on. That input dependence is the selection an LTI S4 model cannot do.
The SSM's implicit weights are products of decays, so they fall off with distance (roughly exponentially, at a rate
set by $\Delta A$ per channel) and everything it keeps must fit in a fixed-size state: cheap, constant memory,
good for smooth long context, weak at exact recall of an arbitrary far token. Attention can put weight on any
earlier token by content regardless of distance (sharp, non-monotone patterns, exact copying), but must keep all
tokens (KV cache) and pays $O(L^2)$.
""",
)

Q_HARDWARE = (
    r"""
**Question 3 (3 points).** The hardware-aware scan. For mamba-2.8b ($d_\text{inner} = 5120$, $N = 16$) at batch 1 and
$L = 32\,768$, how many bytes would a naive implementation materialise for $\bar A$ (or $\bar B u$) per layer in fp32,
versus the input and output $u, y$? What does Mamba's fused kernel keep in SRAM and what does it write, how is the
sequential dependency parallelised, and what is recomputed in the backward pass?
""",
    r"""
$(b, d, L, N)$ fp32: $5120 \cdot 32768 \cdot 16 \cdot 4 \approx 10.7$ GB per tensor per layer, against 0.67 GB for
$u$ or $y$ $(5120 \cdot 32768 \cdot 4)$: 16x the HBM traffic, and the scan is memory-bound. The kernel reads
$\Delta, A, B, C, u$ once from HBM into SRAM, discretises and scans there, and writes only $y$ (and, for decode,
the last state). The recurrence $x_l = \bar A_l x_{l-1} + \bar B_l u_l$ is associative ((a1,b1)∘(a2,b2) =
(a1 a2, a2 b1 + b2)) so it runs as a parallel (Blelloch-style) scan over $L$ across threads; the backward pass
recomputes the intermediate states from the inputs in SRAM instead of storing them (like FlashAttention's
recomputation), so activation memory stays that of a FlashAttention Transformer.
""",
)

Q_SSD = (
    r"""
**Question 4 (2 points).** Your SSD check showed that with a scalar $A$ per head the scan is a masked matrix
product. What does Mamba-2 gain from that restriction on a GPU, and what does it give up?
""",
    r"""
The $(L \circ C B^\top)$ form is matrix multiplication, which runs on tensor cores (an order of magnitude more
FLOP/s than the element-wise scan). Mamba-2 splits the sequence into chunks: inside a chunk it uses the quadratic
matmul form, between chunks it passes the state (a short recurrence), so total cost stays linear in $L$ while most
FLOPs are matmuls; this makes much larger states ($N$ = 64-256) affordable and training 2-8x faster. It gives up a
per-state-dimension decay: all $N$ (and all channels of a head) forget at the same rate, a less expressive $A$,
compensated by the larger state and multi-head structure.
""",
)


def cells():
    return [
        md(INTRO),
        parameters_cell(),
        setup_cell(),
        profile_cell(
            {"mamba": "mamba", "transformer": "llama"},
            {"mamba": "state-spaces/mamba-2.8b-hf", "transformer": "EleutherAI/pythia-2.8b"},
        ),
        locked("load-models", "models = {name: load_model(path, DTYPE, DEVICE) for name, path in MODEL_IDS.items()}\n"
               "import copy\n\n" + MIXER_HELPER.strip("\n")),
        md(r"""
        ## Part 1: the selective scan (prefill)

        Implement the scan exactly as the docstring says; a Python loop over $L$ is fine here (the point is the
        semantics; Part 3 discusses speed). Watch the dtype policy and the three layouts of $B$ and $C$.
        """),
        solution("selective_scan", SCAN_SOLUTION),
        visible_tests("test_selective_scan", SCAN_TESTS, points=4),
        md(r"""
        ## Part 2: one decode step

        At generation time Mamba does not rerun the scan: it keeps `state` $(b, d, N)$ and advances it one token at
        a time: constant time and memory per token. Implement the step; running it $L$ times from zero must give
        the scan's outputs and last state.
        """),
        solution("selective_state_update", UPDATE_SOLUTION),
        visible_tests("test_selective_state_update", UPDATE_TESTS, points=3),
        md(r"""
        ## Part 3: looking inside

        Run a sentence through the first Mamba block with your decode step and plot the state norm per channel
        and the step size $\Delta$ over the tokens.
        """),
        code(STATE_PLOT),
        md(r"""
        What does position $i$ use from position $j$? Unrolling the recurrence gives
        $y_i = \sum_{j \le i} C_i^\top \big(\prod_{j<k\le i} \bar A_k\big) \bar B_j u_j$: an implicit, input-dependent
        "attention" matrix (Ali et al., *The Hidden Attention of Mamba Models*, 2024). Compare it with the
        Transformer's attention weights on the same tokens.
        """),
        code(LOOKS_AT),
        md("Finally the bridge to Mamba-2: the duality between the scan and a masked matrix product."),
        code(SSD_DEMO),
        md("## Part 4: questions"),
        written("discretisation", Q_DISCRETE[0], points=3, model_answer=Q_DISCRETE[1]),
        written("selectivity", Q_SELECT[0], points=2, model_answer=Q_SELECT[1]),
        written("hardware_aware_scan", Q_HARDWARE[0], points=3, model_answer=Q_HARDWARE[1]),
        written("mamba2_ssd", Q_SSD[0], points=2, model_answer=Q_SSD[1]),
    ]


def build(source_root=SOURCE_ROOT):
    return write(source_root / LAB_ID / f"{LAB_ID}.ipynb", cells(), title="Lab 2.4.2: the Mamba architecture")
