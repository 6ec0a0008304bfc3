"""What hidden checks share beyond comparisons: the lab's tiny models loaded on the trusted side, and judging the
submitted benchmarks.json against physics, one group of rules per check.

The models folder on the trusted side is $SPARKGRADE_MODELS_TRUSTED: the grader sets it to the folder the sandbox
loads ``Model(name)`` from, so a check (or a misconception's mutant) sees the very same weights.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Set
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autograder.checks.api import CheckFailed
from autograder.sandbox.calls import Model

if TYPE_CHECKING:  # only for the annotations: the plugin imports this module, plausibility is imported when used
    from autograder.checks.plugin import SubmissionContext
    from autograder.plausibility import BenchmarkRecord, Judgement
    from autograder.rubric import Rubric

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


def as_trusted_model(value: Any) -> Any:
    """What a check sent, as a misconception's mutant needs it: a ``Model(...)`` (with its variants: config, lora,
    freeze) becomes the model built here (trusted_model), anything else stays as it is."""
    return trusted_model(value) if isinstance(value, Model) else value


@cache
def build_model(root: str, spec: Model) -> Any:
    """The recipe sandbox/inside/harness.py follows: load (or build from ``config``), wrap with LoRA, freeze."""
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


BENCHMARKS_MEMO = "benchmarks"


def judged_benchmarks(submission: SubmissionContext,
                      transform: Callable[[list[Any]], list[Any]] | None = None) -> Judgement:
    """The submission's benchmarks.json judged once (autograder.plausibility.judge_file) and kept in its memo:
    every benchmark check of the lab reads the same Judgement, and grading stores it with the grade record."""
    from autograder.plausibility import judge_file

    memo = submission.memo
    if BENCHMARKS_MEMO not in memo:
        memo[BENCHMARKS_MEMO] = judge_file(submission.files.get("benchmarks.json"), submission.hardware, transform)
    judged: Judgement = memo[BENCHMARKS_MEMO]
    return judged


def load_benchmarks(submission: SubmissionContext, transform: Callable[[list[Any]], list[Any]] | None = None,
                    hint: str = "run the benchmark cells") -> list[BenchmarkRecord]:
    """The submitted benchmarks.json as validated records; CheckFailed saying why when it cannot be judged."""
    judged = judged_benchmarks(submission, transform)
    if judged.problem is not None:
        raise CheckFailed(judged.problem + (f": {hint}" if "no benchmarks.json" in judged.problem else ""))
    return list(judged.records)


def judge_benchmarks(submission: SubmissionContext, rubric: Rubric, check: str,
                     rules: Mapping[str, Set[str]] | None = None, *,
                     transform: Callable[[list[Any]], list[Any]] | None = None) -> list[BenchmarkRecord]:
    """Fail ``check`` for every impossible verdict of its rules; a check not in ``rules`` answers for every
    impossible verdict no other check owns. Suspicious verdicts cost nothing (the grader flags them). ``rules``
    defaults to the rubric's own declaration (``rules:`` of its benchmark checks)."""
    from autograder.plausibility import score_verdicts

    if rules is None:
        rules = rubric.benchmark_rules
    records = load_benchmarks(submission, transform)
    verdicts = judged_benchmarks(submission, transform).verdicts
    owned: set[str] = set().union(*rules.values())
    mine = rules.get(check)
    bad = [v for v in verdicts if v.severity == "impossible" and (v.rule in mine if mine else v.rule not in owned)]
    if bad:
        points = rubric.checks[check].points
        scored = score_verdicts(bad, {"impossible": points, "max_total": points})
        raise CheckFailed(" ".join(v.message for v in scored.verdicts)[:1500])
    return records
