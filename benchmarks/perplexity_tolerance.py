"""Where lab 2.4.5's perplexity tolerance sits: the spread of correct implementations against the nearest wrong one.

For each shape a perplexity check uses, on the tiny models and --texts random texts each: the largest relative
difference between the course's answer (fp32) and correct implementations written differently (the model in fp64;
torch's cross_entropy summed in fp32 instead of log_softmax + gather summed in fp64), and the smallest relative
difference to any catalogued mistake that gives a different answer on that text (a mistake equal to the reference
on some input is no mistake there). The check's RTOL must sit well above the first and well below the second.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/perplexity_tolerance.py [--texts N]
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
LAB = "lab-2.4.5-architecture-comparison"
# (model, n, max_length, stride): the shapes of test_perplexity.py's checks; 0 = drawn as ppl_single_window draws
# them (n in 30..60, stride in 8..n/2).
SHAPES = [("llama", 120, 32, 12), ("llama", 100, 24, 24), ("mamba", 90, 32, 16), ("llama", 0, 64, 0)]


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"ppl_tol_{name}", ROOT / "rubrics" / LAB / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cross_entropy_perplexity(model, ids: torch.Tensor, max_length: int, stride: int) -> float:
    """The same windows, scored by F.cross_entropy(reduction='sum') and summed in fp32: another summation order."""
    n = ids.shape[0]
    total, count = torch.zeros((), dtype=torch.float32), 0
    with torch.no_grad():
        for start in range(1, n, stride):
            end = min(start + stride, n)
            begin = max(0, end - 1 - max_length)
            logits = model(ids[begin:end - 1].unsqueeze(0)).logits[0, start - 1 - begin:]
            total += torch.nn.functional.cross_entropy(logits.float(), ids[start:end], reduction="sum")
            count += end - start
    return math.exp(float(total) / count)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=6)
    args = parser.parse_args()
    from transformers import AutoTokenizer

    from autograder.checks import trusted
    from reference import perplexity
    from reference.tiny import build_models

    models = Path(os.environ.get("SPARKGRADE_TEST_MODELS", Path(tempfile.gettempdir()) / "sparkgrade-test-models"))
    build_models(models)
    os.environ[trusted.MODELS_ENV] = str(models)
    mistakes = [m for m in _module("misconceptions").MISCONCEPTIONS if m.function == "perplexity"]
    text = (models / "data" / "corpus" / "prose_valid.txt").read_text()
    corpus = AutoTokenizer.from_pretrained(models / "llama").encode(text, return_tensors="pt")[0]
    gen = torch.Generator().manual_seed(0)
    worst_rtol = 0.0
    nearest_gap = math.inf
    for name, shape_n, max_length, shape_stride in SHAPES:
        n, stride = shape_n, shape_stride
        model = trusted.trusted_model(name)
        model64 = trusted.trusted_model(name, "float64")
        spread, gap, nearest = 0.0, math.inf, ""
        for _ in range(args.texts):
            if shape_n == 0:
                n = int(torch.randint(30, 61, (1,), generator=gen))
                stride = int(torch.randint(8, n // 2 + 1, (1,), generator=gen))
            start = int(torch.randint(0, corpus.numel() - n, (1,), generator=gen))
            ids = corpus[start:start + n].clone()
            want = perplexity(model, ids, max_length, stride)
            for other in (perplexity(model64, ids, max_length, stride),
                          cross_entropy_perplexity(model, ids, max_length, stride)):
                spread = max(spread, abs(other - want) / want)
            for m in mistakes:
                got = m.mutant(model, ids.unsqueeze(0), max_length, stride)
                rel = abs(got - want) / want
                if rel > 1e-9 and rel < gap:
                    gap, nearest = rel, m.name
        worst_rtol, nearest_gap = max(worst_rtol, spread), min(nearest_gap, gap)
        shape = f"n={shape_n} stride={shape_stride}" if shape_n else "n, stride drawn"
        print(f"{name} {shape} max_length={max_length}: correct implementations within "
              f"{spread:.2e}, nearest mistake {gap:.2e} ({nearest})", flush=True)
    rtol = _module("test_perplexity").RTOL
    print(f"RTOL {rtol:.0e}: {rtol / worst_rtol:.0f}x above the spread of correct answers ({worst_rtol:.2e}), "
          f"{nearest_gap / rtol:.0f}x below the nearest mistake ({nearest_gap:.2e}); {args.texts} texts per shape")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
