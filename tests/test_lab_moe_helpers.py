"""Lab 2.4.3's locked helpers, run as the notebook runs them: router logits from hooks on the routers equal the
ones transformers returns, and a checkpoint that needs remote code the course has not trusted fails with one line
that says what to do."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "assignments" / "labs"))
import lab_2_4_3


@pytest.fixture(scope="module")
def helpers() -> dict:
    ns: dict = {"torch": torch, "DEVICE": torch.device("cpu")}
    exec(lab_2_4_3.HELPERS, ns)
    return ns


@pytest.mark.parametrize("name", ["deepseek-moe", "qwen2-moe", "mixtral"])
def test_router_logits_from_hooks_equal_transformers_router_logits(helpers, tiny_models_dir, name):
    model = AutoModelForCausalLM.from_pretrained(tiny_models_dir / name).eval()
    tok = AutoTokenizer.from_pretrained(tiny_models_dir / name)
    text = (tiny_models_dir / "data" / "corpus" / "prose_valid.txt").read_text()[:3000]

    logits, ids = helpers["router_logits_for"](model, tok, text, max_tokens=300, chunk=100)

    with torch.no_grad():
        expected = model(input_ids=ids.reshape(-1, 100), output_router_logits=True).router_logits
    assert len(logits) == len(expected) == len(helpers["moe_routers"](model))
    for got, want in zip(logits, expected, strict=True):
        torch.testing.assert_close(got, want.float(), rtol=1e-5, atol=1e-5)


def test_first_dense_layer_has_no_router(helpers, tiny_models_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_models_dir / "deepseek-moe")
    assert len(helpers["moe_routers"](model)) == model.config.num_hidden_layers - model.config.first_k_dense_replace
    assert helpers["num_routed_experts"](model.config) == model.config.n_routed_experts


def test_deepseek_moe_fields_become_a_config_with_its_defaults():
    ns: dict = {}
    exec(lab_2_4_3.PARAM_COUNTS, ns)
    config = ns["config_from_fields"]({"model_type": "deepseek", "hidden_size": 8, "n_routed_experts": 4})
    assert (config.hidden_size, config.moe_layer_freq, config.n_shared_experts) == (8, 1, None)
    olmoe = ns["config_from_fields"]({"model_type": "olmoe", "num_experts": 4})
    assert type(olmoe).__name__ == "OlmoeConfig" and olmoe.num_experts == 4


def test_untrusted_remote_code_is_one_line_naming_models_yaml(helpers):
    def refuses(model_id, dtype, device, trust_remote_code=False):
        assert trust_remote_code is False
        raise ValueError("The repository contains custom code which must be executed ... set trust_remote_code=True")

    helpers.update(load_model=refuses, DTYPE=torch.bfloat16, TRUSTED_ROLES=set(),
                   MODEL_IDS={"moe": "deepseek-ai/deepseek-moe-16b-base", "moe_alt": "Qwen/Qwen1.5-MoE-A2.7B"})
    with pytest.raises(RuntimeError) as err:
        helpers["load_role"]("moe")
    message = str(err.value)
    assert "models.yaml" in message and "trust_remote_code: [moe]" in message and "\n" not in message


def test_a_trusted_role_loads_with_remote_code(helpers):
    seen = {}

    def loads(model_id, dtype, device, trust_remote_code=False):
        seen[model_id] = trust_remote_code
        return "model", "tokenizer"

    helpers.update(load_model=loads, DTYPE=torch.bfloat16, TRUSTED_ROLES={"moe"},
                   MODEL_IDS={"moe": "deepseek-ai/deepseek-moe-16b-base", "hybrid": "ibm-granite/granite-4.0-h-tiny"})
    helpers["load_role"]("moe")
    helpers["load_role"]("hybrid")
    assert seen == {"deepseek-ai/deepseek-moe-16b-base": True, "ibm-granite/granite-4.0-h-tiny": False}
