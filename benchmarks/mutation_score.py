"""Mutation score per lab: killed mutants / mutants, checks failed by some mutant / checks, and the share of the
failing catalogued mistakes (and of all failing variants) that diagnosis names; with --seeds N, whether every
variant's verdicts are the same for N seeds.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/mutation_score.py [--lab LAB ...] [--seeds N [--no-score]]

Runs the hidden checks in this process (tests/mutation_harness.py, tests/test_rubrics.py's LocalCaller) on the
tiny models ($SPARKGRADE_TEST_MODELS, default <tmp>/sparkgrade-test-models; built if missing)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def main() -> int:
    from mutation_harness import all_outcomes, score, variants, verdicts
    from test_rubrics import FUNCTION_LABS, MODELS_ENV

    from reference.tiny import build_models

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", action="append", choices=FUNCTION_LABS)
    parser.add_argument("--seeds", type=int, default=0, help="also check verdicts are identical for N seeds")
    parser.add_argument("--no-score", action="store_true", help="only the seed check (with --seeds)")
    args = parser.parse_args()
    models = Path(os.environ.get("SPARKGRADE_TEST_MODELS", Path(tempfile.gettempdir()) / "sparkgrade-test-models"))
    build_models(models)
    os.environ[MODELS_ENV] = str(models)
    for lab in args.lab or FUNCTION_LABS:
        start = time.perf_counter()
        if not args.no_score:
            print(score(lab, all_outcomes(lab)).line(), f"[{time.perf_counter() - start:.0f} s]", flush=True)
        if args.seeds:
            start = time.perf_counter()
            seeds = [f"stability-{i}" for i in range(args.seeds)]
            unstable = []
            for m in [None] + [m for m, _ in variants(lab)]:
                first = verdicts(lab, m, seeds[0])
                changed = next((s for s in seeds[1:] if verdicts(lab, m, s) != first), None)
                name = m.name if m else "course answer"
                if changed is not None:
                    unstable.append(name)
                print(f"  {name}: {'CHANGES at ' + changed if changed else 'same'} "
                      f"{sorted(k for k, v in first.items() if v != 'passed')}", flush=True)
            print(f"{lab}: verdicts identical for {args.seeds} seeds: "
                  f"{'all variants' if not unstable else 'NOT for ' + ', '.join(unstable)} "
                  f"[{time.perf_counter() - start:.0f} s]", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
