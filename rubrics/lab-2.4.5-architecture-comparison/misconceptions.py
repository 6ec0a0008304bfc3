"""Known mistakes in lab 2.4.5, as mutated references. The engine names the one the student's outputs match.

The mutants get the arguments the check sent: Model(name) stands for the model, loaded here from
$SPARKGRADE_MODELS_TRUSTED as the sandbox loads it."""

from __future__ import annotations

import math

import torch

from autograder.checks.api import Misconception
from autograder.checks.trusted import as_trusted_model
from reference import perplexity as reference_perplexity


def _nll(model, window, rows_from, rows_to, targets):
    """Summed NLL of ``targets`` from the logits rows [rows_from, rows_to) of one window, and their count."""
    logits = model(window.unsqueeze(0)).logits[0, rows_from:rows_to].float()
    log_probs = torch.log_softmax(logits, -1)
    return float(-log_probs.gather(1, targets[:, None]).double().sum()), targets.numel()


def _ppl(model, input_ids, max_length, stride, mistake):
    model = as_trusted_model(model)
    ids = (input_ids[0] if input_ids.dim() == 2 else input_ids).to(next(model.parameters()).device)
    n = ids.shape[0]
    total, count, means = 0.0, 0, []
    with torch.no_grad():
        if mistake in ("docs_recipe", "overlap_twice"):
            # transformers' docs loop: windows ids[begin:begin+max_length] stepping by stride.
            prev_end = 0
            for begin in range(0, n, stride):
                end = min(begin + max_length, n)
                window = ids[begin:end]
                first = 1 if mistake == "overlap_twice" else max(1, (end - begin) - (end - prev_end))
                if first < end - begin:
                    nll, k = _nll(model, window, first - 1, end - begin - 1, window[first:])
                    total, count = total + nll, count + k
                prev_end = end
                if end == n:
                    break
            return math.exp(total / count)
        with torch.no_grad():
            for start in range(1, n, stride):
                end = min(start + stride, n)
                begin = max(0, end - 1 - max_length)
                if mistake == "no_context":  # each window holds only its own stride tokens
                    begin = start - 1
                window = ids[begin:end - 1]
                if mistake == "unshifted":
                    nll, k = _nll(model, window, start - 1 - begin, end - 1 - begin, ids[start - 1:end - 1])
                else:
                    nll, k = _nll(model, window, start - 1 - begin, end - 1 - begin, ids[start:end])
                total, count = total + nll, count + k
                means.append(nll / k)
    if mistake == "window_means":
        return math.exp(sum(means) / len(means))
    if mistake == "base_2":
        return 2 ** (total / count)
    return math.exp(total / count)


def _mutant(mistake):
    def mutant(model, input_ids, max_length, stride):
        return _ppl(model, input_ids, max_length, stride, mistake)

    return mutant


MISCONCEPTIONS = [
    Misconception("window means averaged", "perplexity",
                  "Sum the NLL over all predicted tokens and divide by their number (n - 1); averaging each "
                  "window's mean weights a short last window as much as a full one.", _mutant("window_means")),
    Misconception("overlapping tokens predicted twice", "perplexity",
                  "With stride < max_length windows overlap: score only the stride new targets of each window, "
                  "so every token after the first is predicted exactly once.", _mutant("overlap_twice")),
    Misconception("transformers docs recipe", "perplexity",
                  "The lab's window ends just before its last target, ids[max(0, e-1-max_length) : e-1]; the docs "
                  "loop puts the last target inside the window, so each target gets one token less context and, "
                  "with stride = max_length, the first token of every later window is never predicted.",
                  _mutant("docs_recipe")),
    Misconception("labels not shifted", "perplexity",
                  "The logits at position t predict token t + 1: compare row t with token t + 1, not token t.",
                  _mutant("unshifted")),
    Misconception("windows without context", "perplexity",
                  "Each window reaches back max_length tokens before its first target: the stride decides which "
                  "tokens are scored, max_length how much context they get. Windows of only the stride tokens "
                  "score every target with too little context.", _mutant("no_context")),
    Misconception("power of 2 of a natural-log NLL", "perplexity",
                  "Cross-entropy from log_softmax is in nats: perplexity = exp(mean NLL). 2 ** x belongs to a "
                  "loss in bits (log2).", _mutant("base_2")),
]

# The course's answers (diagnosis names a mutant only where it differs from them).
REFERENCES = {"perplexity": lambda model, input_ids, max_length, stride:
              reference_perplexity(as_trusted_model(model), input_ids, max_length, stride)}
