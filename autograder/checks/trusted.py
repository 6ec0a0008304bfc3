"""What hidden checks share beyond comparisons: the lab's tiny models loaded on the trusted side, and judging the
submitted benchmarks.json against physics, one group of rules per check.

The models folder on the trusted side is $SPARKGRADE_MODELS_TRUSTED: the grader sets it to the folder the sandbox
loads ``Model(name)`` from, so a check (or a misconception's mutant) sees the very same weights.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Set
from functools import cache
from pathlib import Path
from typing import Any

from autograder.checks.api import CheckFailed

MODELS_ENV = "SPARKGRADE_MODELS_TRUSTED"


def models_root() -> Path:
    root = os.environ.get(MODELS_ENV)
    if not root or not Path(root).is_dir():
        raise RuntimeError(f"the grader needs the lab's models folder in ${MODELS_ENV}")
    return Path(root)


def trusted_model(name: str, dtype: str | None = None) -> Any:
    """The model ``Model(name, dtype)`` names, loaded here as the kernel loads it (cached; eval mode)."""
    if not (models_root() / name).is_dir():
        raise RuntimeError(f"no model {name!r} in the lab's models folder ${MODELS_ENV}")
    return _load(str(models_root()), name, dtype)


@cache
def _load(root: str, name: str, dtype: str | None) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    kw = {"dtype": getattr(torch, dtype)} if dtype else {}
    return AutoModelForCausalLM.from_pretrained(Path(root) / name, local_files_only=True, **kw).eval()


def load_benchmarks(files: Mapping[str, bytes], extras: Set[str] = frozenset(), hint: str = "run the benchmark cells"):
    """The submitted benchmarks.json as validated records (untrusted bytes; fields in ``extras`` are dropped)."""
    from autograder.plausibility import parse_records

    raw = files.get("benchmarks.json")
    if raw is None:
        raise CheckFailed(f"no benchmarks.json was submitted beside the notebook: {hint}")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckFailed(f"benchmarks.json is not valid JSON ({exc})") from None
    if isinstance(data, list) and extras:
        data = [{k: v for k, v in r.items() if k not in extras} if isinstance(r, dict) else r for r in data]
    try:
        return parse_records(data)
    except ValueError as exc:
        raise CheckFailed(f"benchmarks.json: {exc}") from None


def judge_benchmarks(submission, rubric, check: str, rules: Mapping[str, Set[str]], *,
                     extras: Set[str] = frozenset()):
    """Fail ``check`` for every impossible verdict of its rules; a check not in ``rules`` answers for every
    impossible verdict no other check owns. Suspicious verdicts cost nothing (the grader flags them)."""
    from autograder.plausibility import check_benchmarks, score_verdicts

    records = load_benchmarks(submission.files, extras)
    verdicts = check_benchmarks(records, submission.hardware)
    owned = set().union(*rules.values())
    mine = rules.get(check)
    bad = [v for v in verdicts if v.severity == "impossible" and (v.rule in mine if mine else v.rule not in owned)]
    if bad:
        points = rubric.checks[check].points
        scored = score_verdicts(bad, {"impossible": points, "max_total": points})
        raise CheckFailed(" ".join(v.message for v in scored.verdicts)[:1500])
    return records
