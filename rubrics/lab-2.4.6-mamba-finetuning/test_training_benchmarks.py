"""Hidden checks of the submitted benchmarks.json (untrusted bytes) for the LoRA fine-tune.

The lab's notebook records the run as an inference record (generation speed after the fine-tune) with a
``finetune`` block; the plausibility checker judges training as a ``kind: "train"`` record. A file may hold either:
a train record is taken as it is, and a record with a finetune block is read as the train record it describes. The
file is judged once per submission (checks.trusted.judged_benchmarks) and grading stores those verdicts."""

from __future__ import annotations

from autograder.checks.api import CheckFailed
from autograder.checks.trusted import judged_benchmarks, load_benchmarks
from autograder.plausibility import TrainRecord, score_verdicts

TRAINING_RULES = {"train_trainable_le_total", "train_loss_range", "train_throughput_bound", "memory_floor",
                  "memory_ceiling"}


def _train_record(record: dict) -> dict:
    """The train record a lab record with a finetune block describes (its peak memory is the training run's)."""
    ft = record["finetune"] if isinstance(record.get("finetune"), dict) else {}
    out = {k: record[k] for k in ("model", "architecture", "params_total", "params_active", "dtype", "device",
                                  "config", "perplexity", "weights", "lab") if k in record}
    out.update(kind="train", method="lora", batch_size=ft.get("batch_size"), context_len=record.get("context_len"),
               params_trainable=ft.get("trainable"), train_peak_mem_bytes=record.get("peak_mem_bytes"),
               losses=[ft.get("loss_first"), ft.get("loss_last")], lora_rank=ft.get("rank"), steps=ft.get("steps"),
               train_tok_s=ft.get("train_tok_s"))
    return {k: v for k, v in out.items() if v is not None}


def training_records(data: list) -> list:
    """The file's training records (train records as they are, fine-tune blocks read as train records)."""
    training = [r for r in data if isinstance(r, dict) and (r.get("kind") == "train" or "finetune" in r)]
    if not training:
        raise ValueError("it holds no record of the fine-tune: run the record cell after training")
    return [r if r.get("kind") == "train" else _train_record(r) for r in training]


def load(submission):
    return load_benchmarks(submission, training_records, hint="run the record cell")


def fail_on(verdicts, points):
    bad = [v for v in verdicts if v.severity == "impossible"]
    if bad:
        scored = score_verdicts(bad, {"impossible": points, "max_total": points})
        raise CheckFailed(" ".join(v.message for v in scored.verdicts)[:1500])


def test_benchmarks_training_recorded(submission, rubric):
    records = load(submission)
    if not any(isinstance(r, TrainRecord) and r.architecture == "mamba" for r in records):
        raise CheckFailed("benchmarks.json has no training record of a Mamba model")
    verdicts = judged_benchmarks(submission, training_records).verdicts
    fail_on([v for v in verdicts if v.rule not in TRAINING_RULES], rubric.checks["benchmarks_training_recorded"].points)


def test_benchmarks_training_within_physics(submission, rubric):
    load(submission)
    verdicts = judged_benchmarks(submission, training_records).verdicts
    fail_on([v for v in verdicts if v.rule in TRAINING_RULES],
            rubric.checks["benchmarks_training_within_physics"].points)
