"""Layer-wise rank schedules compile into rank_pattern/alpha_pattern; PEFT's parameter count matches exactly."""

from __future__ import annotations

import pytest

from sweep import adapters
from sweep.config.errors import ConfigError
from sweep.config.schema import LoraConfig, ModelConfig
from sweep.models.loader import build_model, inventory
from sweep.config.schema import QuantConfig

MODEL = ModelConfig(name="tiny_bert", source="tiny", arch="bert", num_layers=6, hidden_size=32, intermediate_size=64)


@pytest.fixture(scope="module")
def inv():
    return inventory(MODEL, "classification", 2)


def _peft_counts(lora: LoraConfig, inv):
    from peft import get_peft_model

    plan = adapters.plan(lora, inv)
    base = build_model(MODEL, task="classification", num_labels=2, quant=QuantConfig(), seed=0, device="cpu")
    model = get_peft_model(base, adapters.peft_config(lora, plan, task="classification", total_steps=10))
    per_module = {}
    for name, mod in model.named_modules():
        if hasattr(mod, "lora_A") and "default" in getattr(mod, "lora_A", {}):
            per_module[name.split("base_model.model.", 1)[-1]] = (mod.r["default"], mod.scaling["default"])
    lora_params = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    return plan, per_module, lora_params


def test_band_ranks_by_depth(inv):
    lora = LoraConfig(targets="qv", r=8, alpha=None, alpha_ratio=2, band_ranks=[2, 4, 8])
    plan, per_module, lora_params = _peft_counts(lora, inv)
    # 6 layers in 3 bands: layers 0-1 -> 2, 2-3 -> 4, 4-5 -> 8; q and v are 32x32
    expected = sum(r * (32 + 32) * 2 for r in (2, 2, 4, 4, 8, 8))
    assert plan.lora_params() == expected == lora_params == 3584
    for name, (r, scaling) in per_module.items():
        layer = int(name.split("layer.")[1].split(".")[0])
        assert r == [2, 2, 4, 4, 8, 8][layer]
        assert scaling == pytest.approx(2.0)  # alpha = 2r -> alpha/r = 2


def test_layer_ranks_and_fixed_alpha(inv):
    ranks = [1, 2, 3, 4, 5, 6]
    lora = LoraConfig(targets="all_linear", r=4, alpha=8, layer_ranks=ranks)
    plan, per_module, lora_params = _peft_counts(lora, inv)
    # per layer: q,k,v,attn-out 32->32; intermediate 32->64; output 64->32
    per_layer_width = 4 * 64 + 96 + 96
    assert lora_params == plan.lora_params() == sum(r * per_layer_width for r in ranks)
    for name, (r, scaling) in per_module.items():
        layer = int(name.split("layer.")[1].split(".")[0])
        assert r == ranks[layer] and scaling == pytest.approx(8 / ranks[layer])


def test_module_ranks(inv):
    lora = LoraConfig(targets="qkv", r=2, alpha=4, module_ranks={"value": 6})
    plan, per_module, lora_params = _peft_counts(lora, inv)
    assert lora_params == 6 * 64 * (2 + 2 + 6)
    assert all(r == (6 if name.endswith("value") else 2) for name, (r, _) in per_module.items())


def test_dora_adds_magnitude(inv):
    lora = LoraConfig(targets="qv", r=4, alpha=8, use_dora=True)
    plan, _, lora_params = _peft_counts(lora, inv)
    assert lora_params == plan.lora_params(use_dora=True) == 12 * (4 * 64 + 32)


def test_schedule_errors(inv):
    with pytest.raises(ConfigError, match="lora.layer_ranks: has 2 entries, the model has 6 layers"):
        adapters.plan(LoraConfig(layer_ranks=[1, 2]), inv)
    with pytest.raises(ConfigError, match="lora.module_ranks"):
        adapters.plan(LoraConfig(targets="qv", module_ranks={"key": 3}), inv)
    with pytest.raises(ConfigError, match="set only one layer-wise schedule"):
        LoraConfig(band_ranks=[1, 2], layer_ranks=[1] * 6)


def test_band_of_is_even_and_monotone():
    assert [adapters.band_of(i, 6, 3) for i in range(6)] == [0, 0, 1, 1, 2, 2]
    assert [adapters.band_of(i, 7, 3) for i in range(7)] == [0, 0, 0, 1, 1, 2, 2]
    assert [adapters.band_of(i, 2, 3) for i in range(2)] == [0, 1]
