"""What hidden checks share beyond comparisons: the lab's tiny models loaded on the trusted side, and judging the
submitted benchmarks.json against physics, one group of rules per check.

The models folder on the trusted side is $SPARKGRADE_MODELS_TRUSTED: the grader sets it to the folder the sandbox
loads ``Model(name)`` from, so a check (or a misconception's mutant) sees the very same weights.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Set
from functools import cache
from pathlib import Path
from typing import Any

from autograder.checks.api import CheckFailed
from autograder.sandbox.records import Model

MODELS_ENV = "SPARKGRADE_MODELS_TRUSTED"


def models_root() -> Path:
    root = os.environ.get(MODELS_ENV)
    if not root or not Path(root).is_dir():
        raise RuntimeError(f"the grader needs the lab's models folder in ${MODELS_ENV}")
    return Path(root)


def trusted_model(name: str | Model, dtype: str | None = None) -> Any:
    """The model ``Model(name, dtype, ...)`` names, built here as the kernel builds it (cached; eval mode)."""
    spec = name if isinstance(name, Model) else Model(name, dtype)
    if spec.config is None and not (models_root() / spec.name).is_dir():
        raise RuntimeError(f"no model {spec.name!r} in the lab's models folder ${MODELS_ENV}")
    return build_model(str(models_root()), spec)


@cache
def build_model(root: str, spec: Model) -> Any:
    """The recipe sandbox/inner.py's HARNESS follows: load (or build from ``config``), wrap with LoRA, freeze."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    kw = {"dtype": getattr(torch, spec.dtype)} if spec.dtype else {}
    if spec.config is not None:
        fields = json.loads(spec.config)
        config = AutoConfig.for_model(fields.pop("model_type"), **fields)
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, **kw)
    else:
        model = AutoModelForCausalLM.from_pretrained(Path(root) / spec.name, local_files_only=True, **kw)
    if spec.lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, target_modules=list(spec.lora)))
    if spec.freeze is not None:
        for name, p in model.named_parameters():
            if re.search(spec.freeze, name):
                p.requires_grad_(False)
    return model.eval()


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
