"""Seeded generators for the synthetic text the tiny models are trained and evaluated on.

Three domains with clearly different surface statistics, so that a small Mixture-of-Experts trained on their mix
learns to route them to different experts (lab 2.4.3 builds its expert x domain table from this):

- ``code``:  small Python functions and snippets (keywords, identifiers, indentation, brackets)
- ``maths``: arithmetic facts and one-step algebra (digits, operators, ``=``, single-letter variables)
- ``prose``: simple English sentences (articles, nouns, verbs, adjectives, punctuation)

Everything is produced by the project from ``random.Random(seed)``: no copied corpora, byte-identical output for a
given seed on every machine and Python 3.11+ (``random`` with an explicit seed is stable across platforms).

``instruction_pairs`` produces the fine-tuning set of lab 2.4.6 (``data/instructions.jsonl``): a fixed-format
transformation ("Write as a call: multiply 7 and 12" -> "mul(7, 12)") absent from the pre-training text. Measured on
the tiny Mamba with LoRA r=8 on in_proj/x_proj/dt_proj, 100-150 steps of 16 examples: response loss 6.1 -> 1.3,
the function name always right, exact match about 0 % (it does not copy the numbers). ``task="domain"`` is an
easier alternative on which the same fine-tune reaches about 100 % exact match.
"""

from __future__ import annotations

import random
from collections.abc import Callable

DOMAINS: tuple[str, ...] = ("code", "maths", "prose")

_NAMES = ("total", "count", "items", "value", "result", "index", "data", "score", "buffer", "node", "key", "size")
_FUNCS = ("compute", "update", "parse", "merge", "scale", "check", "load", "build", "filter", "reduce")
_OPS = ("+", "-", "*")
_VARS = ("x", "y", "z", "a", "b", "n")

_SUBJECTS: tuple[str, ...] = tuple(
    (
        "the cat | a small dog | the teacher | my friend | the old man | a young girl | the farmer | "
        "our neighbour | the bird | a tired student | the baker | the river"
    ).split(" | ")
)
_VERBS: tuple[str, ...] = tuple(
    (
        "walks to | looks at | finds | carries | paints | follows | visits | cleans | watches | opens | "
        "remembers | builds"
    ).split(" | ")
)
_OBJECTS: tuple[str, ...] = tuple(
    (
        "the green garden | a red door | the quiet library | an old bridge | the busy market | "
        "a wooden boat | the warm kitchen | a tall tree | the small house | a bright window | "
        "the long road | the blue hill"
    ).split(" | ")
)
_ADVERBS = ("slowly", "every morning", "after lunch", "in the rain", "with great care", "before dinner", "again")
_CONNECT = ("and then", "because", "but", "while", "so")


def _code_snippet(rng: random.Random) -> str:
    kind = rng.randrange(4)
    f, a, b = rng.choice(_FUNCS), rng.choice(_NAMES), rng.choice(_NAMES)
    k = rng.randint(1, 9)
    if kind == 0:
        return f"def {f}({a}, {b}):\n    return {a} {rng.choice(_OPS)} {b} * {k}\n"
    if kind == 1:
        return (
            f"def {f}({a}):\n    {b} = 0\n    for i in range({a}):\n        {b} += i {rng.choice(_OPS)} {k}\n"
            f"    return {b}\n"
        )
    if kind == 2:
        return f"if {a} > {k}:\n    {b} = {f}({a})\nelse:\n    {b} = None\n"
    return f"{a} = [{f}(i) for i in range({k})]\nprint(len({a}), {a}[0])\n"


def _maths_statement(rng: random.Random) -> str:
    kind = rng.randrange(4)
    a, b = rng.randint(0, 99), rng.randint(1, 99)
    if kind == 0:
        op = rng.choice(_OPS)
        value = {"+": a + b, "-": a - b, "*": a * b}[op]
        return f"{a} {op} {b} = {value}\n"
    v = rng.choice(_VARS)
    if kind == 1:
        k = rng.randint(2, 9)
        return f"{k}{v} = {k * a} so {v} = {a}\n"
    if kind == 2:
        return f"{v} + {b} = {a + b} so {v} = {a}\n"
    return f"({a} + {b}) * 2 = {(a + b) * 2}\n"


def _prose_sentence(rng: random.Random) -> str:
    first = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}"
    if rng.random() < 0.5:
        first += f" {rng.choice(_ADVERBS)}"
    if rng.random() < 0.4:
        first += f" {rng.choice(_CONNECT)} {rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}"
    return first[0].upper() + first[1:] + ".\n"


_GENERATORS: dict[str, Callable[[random.Random], str]] = {
    "code": _code_snippet,
    "maths": _maths_statement,
    "prose": _prose_sentence,
}


def generate_domain(domain: str, n_chars: int, seed: int) -> str:
    """About ``n_chars`` characters of ``domain`` text (whole snippets/lines), deterministic in ``seed``."""
    if domain not in _GENERATORS:
        raise ValueError(f"unknown domain {domain!r}; expected one of {DOMAINS}")
    rng = random.Random(f"{domain}-{seed}")
    parts: list[str] = []
    size = 0
    while size < n_chars:
        piece = _GENERATORS[domain](rng)
        parts.append(piece)
        size += len(piece)
    return "".join(parts)


def generate_corpus(n_train_chars: int, n_valid_chars: int, seed: int) -> dict[str, str]:
    """``{"code": ..., "code_valid": ..., "maths": ..., ...}``; the valid split uses a different seed stream."""
    out: dict[str, str] = {}
    for domain in DOMAINS:
        out[domain] = generate_domain(domain, n_train_chars, seed)
        out[f"{domain}_valid"] = generate_domain(domain, n_valid_chars, seed + 1_000_003)
    return out


_CALL_NAMES = {"add": "add", "subtract": "sub", "multiply": "mul", "take the max of": "max", "take the min of": "min"}


def instruction_pairs(n: int, seed: int, *, task: str = "call") -> list[dict[str, str]]:
    """``n`` ``{"instruction", "response"}`` pairs of one fixed-format task, deterministic in ``seed``.

    ``task="call"`` (the lab's set): words to a function call, "Write as a call: multiply 7 and 12" ->
    "mul(7, 12)". A short LoRA fine-tune of the tiny Mamba learns the format and the five names (response loss
    about 6 -> 1.3 nats/token, function name right on all held-out examples) but not copying two numbers from
    the prompt, so exact match stays near 0 %: its fixed-size state copies poorly at this scale.
    ``task="domain"``: name the domain of a line, "Name the domain: 5a = 295 so a = 59" -> "maths"; the same
    fine-tune lifts exact match from 0 % to about 100 %.
    """
    rng = random.Random(f"instructions-{seed}")
    pairs: list[dict[str, str]] = []
    if task == "call":
        phrases = sorted(_CALL_NAMES)
        for _ in range(n):
            phrase = rng.choice(phrases)
            a, b = rng.randint(0, 99), rng.randint(0, 99)
            pairs.append(
                {
                    "instruction": f"Write as a call: {phrase} {a} and {b}",
                    "response": f"{_CALL_NAMES[phrase]}({a}, {b})",
                }
            )
    elif task == "domain":
        for _ in range(n):
            domain = rng.choice(DOMAINS)
            line = _GENERATORS[domain](rng).splitlines()[0]
            pairs.append({"instruction": f"Name the domain: {line}", "response": domain})
    else:
        raise ValueError(f"unknown task {task!r}; expected 'call' or 'domain'")
    return pairs
