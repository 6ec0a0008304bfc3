"""Tiny offline models, tokenizer and text for the labs' default ``tiny`` profile (CPU, no network).

``build_models(out_dir)`` writes real transformers checkpoints (``save_pretrained``, safetensors) that the labs load
with ``AutoModelForCausalLM.from_pretrained(path)`` / ``AutoTokenizer.from_pretrained(path)`` exactly as the
``spark`` profile loads hub ids::

    OUT_DIR/mamba/        MambaForCausalLM, trained briefly        (stands in for state-spaces/mamba-*-hf)
    OUT_DIR/llama/        LlamaForCausalLM with GQA, trained briefly (the Transformer baseline, e.g. pythia-*)
    OUT_DIR/mixtral/      MixtralForCausalLM, 8 experts top-2     (untrained)
    OUT_DIR/qwen2-moe/    Qwen2MoeForCausalLM, shared expert, norm_topk_prob=False (untrained)
    OUT_DIR/jamba/        JambaForCausalLM hybrid (untrained; skipped if this transformers lacks it)
    OUT_DIR/deepseek-moe/ DeepseekV2ForCausalLM: 2 shared + 16 routed experts top-4, layer 0 dense (untrained;
                          stands in for DeepSeekMoE-16B, lab 2.4.3)
    OUT_DIR/olmoe/        OlmoeForCausalLM: 16 experts top-2, no shared expert (untrained; OLMoE-1B-7B, lab 2.4.5)
    OUT_DIR/moe-domains/  Mixtral-style MoE trained on code/maths/prose until experts specialise (lab 2.4.3);
                          routing_stats.json holds its expert x domain table, trained and at initialisation
    OUT_DIR/data/corpus/{code,maths,prose}.txt and *_valid.txt   synthetic text (reference.tiny.corpus)
    OUT_DIR/data/instructions.jsonl, instructions_valid.jsonl     the LoRA fine-tuning task of lab 2.4.6
    OUT_DIR/manifest.json  recipe hash + sha256 of every file; a rebuild happens only if it no longer matches

Every model folder also holds the tokenizer (``reference.tiny.tokenizer``). The build is seeded and single-threaded:
bit-identical on rerun on one machine (see ``reference.tiny.train`` for across machines). CLI:
``python -m reference.tiny OUT_DIR [--force]``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import transformers

from . import configs, corpus, tokenizer, train
from .configs import SEQ_LEN, SPECS, TinySpec

__all__ = ["BUILD_VERSION", "MODEL_NAMES", "build_models", "load_manifest"]

BUILD_VERSION = "1"
SEED = 1234
CORPUS_TRAIN_CHARS = 60_000  # per domain
CORPUS_VALID_CHARS = 8_000
N_INSTRUCTIONS = 200
N_INSTRUCTIONS_VALID = 50
MODEL_NAMES: tuple[str, ...] = tuple(SPECS)
MANIFEST = "manifest.json"


def _recipe_hash() -> str:
    """Hash of everything that determines the output: this package's source, the settings and library versions."""
    h = hashlib.sha256()
    for module in (configs, corpus, tokenizer, train):
        h.update(Path(module.__file__ or "").read_bytes())
    h.update(Path(__file__).read_bytes())
    settings = [BUILD_VERSION, SEED, CORPUS_TRAIN_CHARS, CORPUS_VALID_CHARS, N_INSTRUCTIONS, N_INSTRUCTIONS_VALID]
    h.update(json.dumps(settings).encode())
    h.update(f"torch {torch.__version__} transformers {transformers.__version__}".encode())
    return h.hexdigest()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _file_table(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): _sha256(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST and not p.name.startswith(".")
    }


def load_manifest(out_dir: str | Path) -> dict[str, Any] | None:
    """The manifest of a build in ``out_dir``, or None if there is none."""
    path = Path(out_dir) / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


def _is_current(out_dir: Path, recipe: str) -> bool:
    manifest = load_manifest(out_dir)
    if manifest is None or manifest.get("recipe") != recipe:
        return False
    for rel, digest in manifest["files"].items():
        path = out_dir / rel
        if not path.is_file() or _sha256(path) != digest:
            return False
    return True


def _paths(out_dir: Path, manifest: dict[str, Any]) -> dict[str, Path]:
    paths = {name: out_dir / name for name in manifest["models"]}
    paths["data"] = out_dir / "data"
    return paths


@contextlib.contextmanager
def _locked(out_dir: Path) -> Iterator[None]:
    """One builder at a time per ``out_dir`` (parallel graders may all ask for the models)."""
    with open(out_dir / ".build.lock", "a") as handle:  # "a": never truncates, so never touches mtime
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' 'falling back to PyTorch' notices and save progress bars while building."""
    previous = transformers.logging.get_verbosity()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(previous)
        if bars:
            transformers.utils.logging.enable_progress_bar()


def _make_readable(root: Path) -> None:
    """World-readable files and folders: the sandboxed notebook (another uid) loads the models from here."""
    for path in (root, *root.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _new_model(spec: TinySpec, seed: int) -> transformers.PreTrainedModel:
    config = getattr(transformers, spec.config_class)(**spec.config)
    torch.manual_seed(seed)
    return getattr(transformers, spec.model_class)(config).eval()


def _jamba_usable(model: transformers.PreTrainedModel) -> str | None:
    """None if the Jamba runs a forward pass and a 2-token decode on this machine, else the reason."""
    try:
        ids = torch.tensor([[1, 5, 6, 7]])
        with torch.no_grad():
            model(input_ids=ids)
            model.generate(ids, max_new_tokens=2, do_sample=False)
    except Exception as exc:  # the reason is recorded in the manifest, the rest of the build goes on
        return f"{type(exc).__name__}: {exc}"
    return None


def _write_data(data_dir: Path, texts: dict[str, str]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    corpus_dir = data_dir / "corpus"
    corpus_dir.mkdir(parents=True)
    for name, text in texts.items():
        (corpus_dir / f"{name}.txt").write_text(text)
    pairs = corpus.instruction_pairs(N_INSTRUCTIONS, SEED)
    seen = {p["instruction"] for p in pairs}
    valid = [p for p in corpus.instruction_pairs(4 * N_INSTRUCTIONS_VALID, SEED + 1) if p["instruction"] not in seen]
    valid = valid[:N_INSTRUCTIONS_VALID]
    for name, rows in (("instructions.jsonl", pairs), ("instructions_valid.jsonl", valid)):
        (data_dir / name).write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    return pairs, valid


def _build(out_dir: Path, recipe: str) -> dict[str, Any]:
    started, cpu_started = time.perf_counter(), time.process_time()
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out_dir))
    try:
        texts = corpus.generate_corpus(CORPUS_TRAIN_CHARS, CORPUS_VALID_CHARS, SEED)
        pairs, _ = _write_data(staging / "data", texts)
        tok_texts = [line for d in corpus.DOMAINS for line in texts[d].splitlines(keepends=True)]
        tok_texts += [f"{p['instruction']}\n{p['response']}\n" for p in pairs]
        tok = tokenizer.train_tokenizer(tok_texts)
        train_ids = [torch.tensor(tok(texts[d])["input_ids"]) for d in corpus.DOMAINS]
        valid_ids = [torch.tensor(tok(texts[f"{d}_valid"])["input_ids"]) for d in corpus.DOMAINS]

        models: dict[str, dict[str, Any]] = {}
        skipped: dict[str, str] = {}
        for index, spec in enumerate(SPECS.values()):
            if not hasattr(transformers, spec.model_class):
                skipped[spec.name] = f"transformers {transformers.__version__} has no {spec.model_class}"
                continue
            t0, cpu0 = time.perf_counter(), time.process_time()
            model = _new_model(spec, SEED + index)
            if spec.name == "jamba" and (reason := _jamba_usable(model)) is not None:
                skipped[spec.name] = reason
                continue
            info: dict[str, Any] = {
                "class": spec.model_class,
                "params": sum(p.numel() for p in model.parameters()),
                "train_steps": spec.train_steps,
            }
            if spec.name == "moe-domains":
                initial = train.domain_routing_counts(model, valid_ids)
            if spec.train_steps:
                batches = train.domain_batches(
                    train_ids, batch_size=spec.batch_size, seq_len=spec.seq_len, steps=spec.train_steps, seed=SEED
                )
                losses = train.train_lm(model, batches, steps=spec.train_steps, lr=spec.lr, seed=SEED)
                info["loss_first"], info["loss_last"] = round(losses[0], 4), round(losses[-1], 4)
                info["valid_perplexity"] = _perplexity(model, valid_ids)
            if spec.name == "moe-domains":
                trained = train.domain_routing_counts(model, valid_ids)
                stats: dict[str, Any] = {
                    "domains": list(corpus.DOMAINS),
                    "note": "top-1 expert counts per layer: counts[layer][expert][domain], on data/corpus/*_valid",
                    "trained": _routing_summary(trained),
                    "initial": _routing_summary(initial),
                }
                info["mutual_information_bits"] = stats["trained"]["mutual_information_bits"]
                info["mutual_information_bits_initial"] = stats["initial"]["mutual_information_bits"]
            folder = staging / spec.name
            model.save_pretrained(folder)
            tok.save_pretrained(folder)
            if spec.name == "moe-domains":
                (folder / "routing_stats.json").write_text(json.dumps(stats, indent=1) + "\n")
            info["seconds"] = round(time.perf_counter() - t0, 2)
            info["cpu_seconds"] = round(time.process_time() - cpu0, 2)
            models[spec.name] = info
        _make_readable(staging)

        for name in (*models, "data"):
            target = out_dir / name
            if target.exists():
                shutil.rmtree(target)
            (staging / name).rename(target)
        for name in skipped:  # a stale folder from a build where it worked would be misleading
            shutil.rmtree(out_dir / name, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    manifest = {
        "recipe": recipe,
        "build_version": BUILD_VERSION,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "build_seconds": round(time.perf_counter() - started, 1),
        "build_cpu_seconds": round(time.process_time() - cpu_started, 1),
        "models": models,
        "skipped": skipped,
        "files": _file_table(out_dir),
    }
    tmp = out_dir / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    tmp.replace(out_dir / MANIFEST)
    return manifest


@torch.no_grad()
def _perplexity(model: transformers.PreTrainedModel, streams: list[torch.Tensor]) -> dict[str, float]:
    """Per-domain perplexity on the first 32 x SEQ_LEN held-out tokens: exp of the mean next-token loss."""
    out = {}
    with train.single_thread(), train.fast_mamba_training():
        for domain, stream in zip(corpus.DOMAINS, streams, strict=True):
            n = min(len(stream) // SEQ_LEN, 32) * SEQ_LEN
            windows = stream[:n].view(-1, SEQ_LEN)
            loss = model(input_ids=windows, labels=windows).loss
            out[domain] = round(float(torch.exp(loss)), 3)
    return out


def _routing_summary(counts: torch.Tensor) -> dict[str, Any]:
    return {
        "counts": counts.long().tolist(),
        "mutual_information_bits": [round(float(v), 4) for v in train.routing_mutual_information(counts)],
        "favourite2_share": [round(float(v), 4) for v in train.favourite_expert_share(counts, k=2)],
    }


def build_models(out_dir: str | Path, *, force: bool = False) -> dict[str, Path]:
    """Build (or find already built) every tiny model and the data; return ``{name: folder}``.

    Keys: the model folders that were built (``mamba``, ``llama``, ``mixtral``, ``qwen2-moe``, ``jamba`` unless
    skipped, ``moe-domains``, ``deepseek-moe``, ``olmoe``) and ``data``. Returns at once if
    ``out_dir/manifest.json`` matches the current recipe and every file it lists is intact, unless ``force``. Takes
    under a minute on two CPU cores.
    """
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    recipe = _recipe_hash()
    with _locked(out):
        if force or not _is_current(out, recipe):
            with _quiet_transformers():
                _build(out, recipe)
        manifest = load_manifest(out)
        assert manifest is not None
        return _paths(out, manifest)
