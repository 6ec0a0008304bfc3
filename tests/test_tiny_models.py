"""The tiny offline models of the ``tiny`` profile load, run, generate, route and specialise as the labs expect."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers/huggingface_hub read it; nothing here may touch a hub

import huggingface_hub.constants
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.models.mamba import modeling_mamba

from reference.moe import moe_param_counts
from reference.tiny import MODEL_NAMES, build_models, load_manifest
from reference.tiny.configs import SPECS
from reference.tiny.corpus import DOMAINS, generate_corpus, instruction_pairs
from reference.tiny.tokenizer import VOCAB_SIZE
from reference.tiny.train import (
    domain_routing_counts,
    favourite_expert_share,
    routing_mutual_information,
    training_scan,
)

MOE_MODELS = ("mixtral", "qwen2-moe", "moe-domains", "jamba", "deepseek-moe", "olmoe")


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One build per test session: its paths, manifest and build time."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        transformers.logging.set_verbosity_error()
        out = tmp_path_factory.mktemp("tiny")
        started = time.perf_counter()
        paths = build_models(out)
        seconds = time.perf_counter() - started
        manifest = load_manifest(out)
        assert manifest is not None
        yield {"out": out, "paths": paths, "manifest": manifest, "seconds": seconds}


def _built(tiny: dict[str, Any], name: str) -> Path:
    if name not in tiny["paths"]:
        pytest.skip(f"{name} not built here: {tiny['manifest']['skipped'].get(name)}")
    return tiny["paths"][name]


def _valid_ids(tiny: dict[str, Any], tok: Any) -> list[torch.Tensor]:
    corpus_dir = tiny["paths"]["data"] / "corpus"
    return [torch.tensor(tok((corpus_dir / f"{d}_valid.txt").read_text())["input_ids"]) for d in DOMAINS]


def test_build_writes_every_model_and_the_data(tiny: dict[str, Any]) -> None:
    paths, manifest = tiny["paths"], tiny["manifest"]
    assert set(paths) == {*manifest["models"], "data"}
    assert set(manifest["models"]) | set(manifest["skipped"]) == set(MODEL_NAMES)
    for name in ("mamba", "llama", "mixtral", "qwen2-moe", "moe-domains"):
        assert (paths[name] / "model.safetensors").is_file()
        assert (paths[name] / "tokenizer.json").is_file()
    # the build's time is measured, not asserted (wall time on a shared machine is no verdict): issue 18's budget
    print(f"tiny build took {tiny['seconds']:.0f} s")


def test_model_folders_are_small_and_world_readable(tiny: dict[str, Any]) -> None:
    total = 0
    for name in tiny["manifest"]["models"]:
        size = sum(p.stat().st_size for p in tiny["paths"][name].rglob("*") if p.is_file())
        assert size < 5 * 2**20, f"{name} is {size / 2**20:.1f} MiB"
        total += size
        assert all(p.stat().st_mode & 0o004 for p in tiny["paths"][name].rglob("*"))
    assert total < 20 * 2**20


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_loads_offline_runs_and_generates(tiny: dict[str, Any], name: str) -> None:
    path = _built(tiny, name)
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    assert type(model).__name__ == SPECS[name].model_class
    assert model.config.vocab_size == len(tok) == VOCAB_SIZE
    batch = tok(["def compute(x):\n", "The cat walks to"], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, batch["input_ids"].shape[1], VOCAB_SIZE)
    assert torch.isfinite(logits).all()
    prompt = tok("12 + 5 =", return_tensors="pt")
    out = model.generate(**prompt, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[0] == 1 and prompt["input_ids"].shape[1] < out.shape[1] <= prompt["input_ids"].shape[1] + 6
    assert isinstance(tok.decode(out[0], skip_special_tokens=True), str)


def test_tokenizer_round_trips_text_and_knows_its_special_tokens(tiny: dict[str, Any]) -> None:
    tok = AutoTokenizer.from_pretrained(tiny["paths"]["mamba"])
    text = "def f(x):\n    return x * 2\n3x = 12 so x = 4\nThe old man finds a red door. Naïve café ✓"
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text
    assert len(ids) < len(text)  # merges were learnt
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    assert tok.convert_ids_to_tokens([0, 1, 2]) == ["<|pad|>", "<|bos|>", "<|eos|>"]


@pytest.mark.parametrize("name", MOE_MODELS)
def test_moe_models_return_router_logits_per_moe_layer(tiny: dict[str, Any], name: str) -> None:
    model = AutoModelForCausalLM.from_pretrained(_built(tiny, name))
    cfg = model.config
    n_experts = getattr(cfg, "num_local_experts", None) or cfg.num_experts
    if name == "jamba":
        n_moe_layers = sum(
            1 for i in range(cfg.num_hidden_layers) if i % cfg.expert_layer_period == cfg.expert_layer_offset
        )
    elif name == "deepseek-moe":
        n_moe_layers = cfg.num_hidden_layers - cfg.first_k_dense_replace
    else:
        n_moe_layers = cfg.num_hidden_layers
    ids = torch.randint(3, VOCAB_SIZE, (3, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(input_ids=ids, output_router_logits=True)
    assert len(out.router_logits) == n_moe_layers
    assert all(t.shape == (3 * 7, n_experts) for t in out.router_logits)


def test_moe_configs_match_the_models_they_stand_for(tiny: dict[str, Any]) -> None:
    qwen = AutoModelForCausalLM.from_pretrained(tiny["paths"]["qwen2-moe"])
    assert qwen.config.norm_topk_prob is False
    assert qwen.config.shared_expert_intermediate_size > 0
    assert hasattr(qwen.model.layers[0].mlp, "shared_expert_gate")
    mixtral = AutoModelForCausalLM.from_pretrained(tiny["paths"]["mixtral"])
    assert (mixtral.config.num_local_experts, mixtral.config.num_experts_per_tok) == (8, 2)
    llama = AutoModelForCausalLM.from_pretrained(tiny["paths"]["llama"])
    assert llama.config.num_key_value_heads < llama.config.num_attention_heads
    params = tiny["manifest"]["models"]
    assert 0.5 < params["llama"]["params"] / params["mamba"]["params"] < 2


def test_deepseek_moe_has_the_shape_of_deepseekmoe(tiny: dict[str, Any]) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny["paths"]["deepseek-moe"])
    cfg = model.config
    first, *rest = model.model.layers
    assert not hasattr(first.mlp, "gate"), "the first layer is dense (first_k_dense_replace = 1)"
    for layer in rest:
        assert layer.mlp.gate.weight.shape == (cfg.n_routed_experts, cfg.hidden_size)
        assert layer.mlp.shared_experts.gate_proj.out_features == cfg.n_shared_experts * cfg.moe_intermediate_size
    assert cfg.n_shared_experts == 2 and cfg.num_experts_per_tok < cfg.n_routed_experts
    assert cfg.norm_topk_prob is False and cfg.topk_method == "greedy"  # DeepSeekMoE's softmax top-k


@pytest.mark.parametrize("name", ["deepseek-moe", "olmoe", "qwen2-moe", "mixtral"])
def test_moe_param_counts_equal_the_built_models_parameters(tiny: dict[str, Any], name: str) -> None:
    model = AutoModelForCausalLM.from_pretrained(_built(tiny, name))
    counts = moe_param_counts(model.config)
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert counts == moe_param_counts(json.loads((tiny["paths"][name] / "config.json").read_text()))


@pytest.mark.parametrize("name", ["mamba", "llama", "moe-domains"])
def test_trained_models_have_meaningful_perplexity(tiny: dict[str, Any], name: str) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny["paths"][name])
    tok = AutoTokenizer.from_pretrained(tiny["paths"][name])
    for stream in _valid_ids(tiny, tok):
        window = stream[:256].view(4, 64)
        with torch.no_grad():
            perplexity = float(torch.exp(model(input_ids=window, labels=window).loss))
        assert perplexity < VOCAB_SIZE / 10  # an untrained model sits at about VOCAB_SIZE


def test_moe_domains_experts_specialise_by_domain(tiny: dict[str, Any]) -> None:
    path = tiny["paths"]["moe-domains"]
    trained = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)
    untrained = type(trained)(trained.config).eval()  # same architecture, fresh random weights
    valid = _valid_ids(tiny, tok)
    counts_trained = domain_routing_counts(trained, valid)
    counts_untrained = domain_routing_counts(untrained, valid)
    mi_trained, mi_untrained = routing_mutual_information(counts_trained), routing_mutual_information(counts_untrained)
    share_trained = favourite_expert_share(counts_trained, k=2)
    share_untrained = favourite_expert_share(counts_untrained, k=2)
    assert mi_trained.mean() > 0.4 and mi_trained.mean() > 3 * mi_untrained.mean(), (mi_trained, mi_untrained)
    assert share_trained.mean() > 0.65 and share_trained.mean() > share_untrained.mean() + 0.15
    stats = json.loads((path / "routing_stats.json").read_text())
    assert stats["domains"] == list(DOMAINS)
    assert torch.allclose(torch.tensor(stats["trained"]["mutual_information_bits"]).double(), mi_trained, atol=1e-3)


def test_routing_statistics_on_known_tables() -> None:
    diagonal = torch.zeros(1, 3, 3)
    diagonal[0] = torch.eye(3) * 10
    assert torch.allclose(routing_mutual_information(diagonal), torch.log2(torch.tensor([3.0])).double())
    uniform = torch.ones(1, 8, 3)
    assert torch.allclose(routing_mutual_information(uniform), torch.zeros(1).double())
    assert torch.allclose(favourite_expert_share(uniform, k=2), torch.tensor([0.25]).double())


def test_data_files_are_written(tiny: dict[str, Any]) -> None:
    data = tiny["paths"]["data"]
    for domain in DOMAINS:
        assert len((data / "corpus" / f"{domain}.txt").read_text()) > 10_000
        assert len((data / "corpus" / f"{domain}_valid.txt").read_text()) > 1_000
    rows = [json.loads(line) for line in (data / "instructions.jsonl").read_text().splitlines()]
    valid = [json.loads(line) for line in (data / "instructions_valid.jsonl").read_text().splitlines()]
    assert len(rows) == 200 and all(set(r) == {"instruction", "response"} for r in rows)
    assert not {r["instruction"] for r in rows} & {r["instruction"] for r in valid}


def test_corpus_and_instructions_are_deterministic() -> None:
    assert generate_corpus(2_000, 500, seed=7) == generate_corpus(2_000, 500, seed=7)
    assert generate_corpus(2_000, 500, seed=7) != generate_corpus(2_000, 500, seed=8)
    assert instruction_pairs(5, seed=3) == instruction_pairs(5, seed=3)
    assert instruction_pairs(1, seed=0) == [
        {"instruction": "Write as a call: multiply 57 and 22", "response": "mul(57, 22)"}
    ]
    assert {r["response"] for r in instruction_pairs(30, seed=3, task="domain")} == set(DOMAINS)


def test_training_scan_matches_transformers_scan() -> None:
    gen = torch.Generator().manual_seed(0)
    b, d, length, n = 2, 8, 11, 4
    u, dt, z = (torch.randn(b, d, length, generator=gen) for _ in range(3))
    B, C = (torch.randn(b, n, length, generator=gen) for _ in range(2))
    A = -4 * torch.rand(d, n, generator=gen)
    D, bias = torch.randn(d, generator=gen), torch.randn(d, generator=gen)
    kwargs = {"D": D, "z": z, "delta_bias": bias, "delta_softplus": True, "return_last_state": True}
    want = modeling_mamba.mamba_selective_scan(u, dt, A, B, C, **kwargs)
    got = training_scan(u, dt, A, B, C, **kwargs)
    for w, g in zip(want, got, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


def test_second_build_is_fast_and_changes_nothing(tiny: dict[str, Any]) -> None:
    out = tiny["out"]
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*") if p.is_file()}
    assert before, "nothing was built"
    assert build_models(out) == tiny["paths"]  # nothing rebuilt: every file's bytes and mtime are as before
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*") if p.is_file()}
    assert after == before
