"""Target presets resolve per architecture; explicit names are checked; layer-wise ranks count exactly."""

from __future__ import annotations

import pytest

from sweep.config.errors import ConfigError
from sweep.config.schema import ModelConfig
from sweep.models.loader import inventory
from sweep.models.targets import resolve_targets

BERT = ModelConfig(name="tiny_bert", source="tiny", arch="bert", num_layers=3)
LLAMA = ModelConfig(name="tiny_llama", source="tiny", arch="llama", num_layers=3)


@pytest.fixture(scope="module")
def bert_inv():
    return inventory(BERT, "classification", 3)


@pytest.fixture(scope="module")
def llama_inv():
    return inventory(LLAMA, "instruction", None)


def _leaves(names):
    return sorted({".".join(n.split(".")[-2:]) for n in names})


EXPECTED_BERT = {
    "qv": ["self.query", "self.value"],
    "qk": ["self.key", "self.query"],
    "qkv": ["self.key", "self.query", "self.value"],
    "qkvo": ["output.dense", "self.key", "self.query", "self.value"],
    "mlp": ["intermediate.dense", "output.dense"],
}
EXPECTED_LLAMA = {
    "qv": ["self_attn.q_proj", "self_attn.v_proj"],
    "qk": ["self_attn.k_proj", "self_attn.q_proj"],
    "qkv": ["self_attn.k_proj", "self_attn.q_proj", "self_attn.v_proj"],
    "qkvo": ["self_attn.k_proj", "self_attn.o_proj", "self_attn.q_proj", "self_attn.v_proj"],
    "mlp": ["mlp.down_proj", "mlp.gate_proj", "mlp.up_proj"],
}


@pytest.mark.parametrize("preset", sorted(EXPECTED_BERT))
def test_bert_presets(bert_inv, preset):
    names = resolve_targets(preset, bert_inv)
    assert _leaves(names) == EXPECTED_BERT[preset]
    per_layer = len(names) // 3
    assert len(names) == 3 * per_layer  # every layer, same modules
    if preset == "qkvo":
        assert all("attention.output.dense" in n for n in names if n.endswith("output.dense"))
    if preset == "mlp":
        assert not any("attention" in n for n in names)


@pytest.mark.parametrize("preset", sorted(EXPECTED_LLAMA))
def test_llama_presets(llama_inv, preset):
    names = resolve_targets(preset, llama_inv)
    assert _leaves(names) == EXPECTED_LLAMA[preset]
    assert len(names) == 3 * len(EXPECTED_LLAMA[preset])


def test_all_linear_is_every_block_linear_and_no_head(bert_inv, llama_inv):
    assert len(resolve_targets("all_linear", bert_inv)) == 3 * 6
    assert len(resolve_targets("all_linear", llama_inv)) == 3 * 7
    assert not any(n.endswith(("classifier", "lm_head", "pooler.dense")) for n in resolve_targets("all_linear", bert_inv))


def test_explicit_list_checked_against_the_model(bert_inv):
    assert len(resolve_targets(["query", "value"], bert_inv)) == 6
    with pytest.raises(ConfigError, match=r"unknown module name\(s\) 'q_proj'.*query"):
        resolve_targets(["query", "q_proj"], bert_inv)


def test_unknown_model_type_needs_explicit_list(bert_inv):
    from dataclasses import replace

    odd = replace(bert_inv, model_type="somethingnew")
    with pytest.raises(ConfigError, match="no preset table"):
        resolve_targets("qv", odd)
    assert len(resolve_targets("all_linear", odd)) == 18


def test_layer_index_detected(bert_inv, llama_inv):
    assert bert_inv.num_layers == 3 and llama_inv.num_layers == 3
    assert {m.layer for m in bert_inv.block_linears} == {0, 1, 2}
