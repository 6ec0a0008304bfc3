"""Hidden checks for moe_param_counts(config) -> {"total", "active"}: exact integers against the reference, which
matches sum(p.numel()) of the instantiated model and the published totals (tests/test_reference_moe.py). Configs
cross as dicts of their config.json fields; the reference reads the dict itself (DeepSeekMoE has no config class)."""

from __future__ import annotations

from autograder.checks.api import CheckFailed, expect_equal
from reference import moe_param_counts as reference_counts


def counts(student, name, config):
    got = student.moe_param_counts(config)
    if not isinstance(got, dict) or set(got) != {"total", "active"}:
        raise CheckFailed(f"moe_param_counts should return a dict with the keys 'total' and 'active', "
                          f"got {got!r}"[:300])
    want = reference_counts(config)
    expect_equal(got["total"], want["total"], name=f"total parameters of {name}")
    expect_equal(got["active"], want["active"], name=f"active parameters of {name}")


def test_params_mixtral(student, moe_configs):
    counts(student, "a small Mixtral (8 experts, top-2)", moe_configs["mixtral"])
    counts(student, "a small Mixtral (6 experts, top-3)", moe_configs["mixtral_top3"])


def test_params_qwen2_moe_shared_expert(student, moe_configs):
    counts(student, "a small Qwen2-MoE (12 experts, top-4, shared expert)", moe_configs["qwen2_moe"])


def test_params_qwen2_moe_dense_layers(student, moe_configs):
    counts(student, "a Qwen2-MoE with dense layers 0, 2 and 4", moe_configs["qwen2_moe_dense"])


def test_params_tied_embeddings(student, moe_configs):
    counts(student, "a Mixtral with tied embeddings", moe_configs["mixtral_tied"])
    counts(student, "a Qwen2-MoE with tied embeddings", moe_configs["qwen2_moe_tied"])


def test_params_mixtral_8x7b(student, moe_configs):
    counts(student, "Mixtral-8x7B", moe_configs["mixtral_8x7b"])


def test_params_deepseek_moe_shared_experts(student, moe_configs):
    counts(student, "a small DeepSeekMoE (2 shared + 10 routed experts, top-3, layer 0 dense)",
           moe_configs["deepseek_moe"])


def test_params_deepseek_moe_16b(student, moe_configs):
    counts(student, "DeepSeekMoE-16B (16.4B total, 2.8B active)", moe_configs["deepseek_moe_16b"])


def test_params_deepseek_v2_v3_mla(student, moe_configs):
    counts(student, "a DeepSeek-V2-Lite-shaped config (MLA attention, 2 shared experts)",
           moe_configs["deepseek_v2_lite_like"])
    counts(student, "a DeepSeek-V3-shaped config (MLA with a low-rank query, 2 dense layers)",
           moe_configs["deepseek_v3_like"])
