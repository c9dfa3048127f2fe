"""Cost and ROI arithmetic on known inputs (numbers chosen to be exact in binary floating point)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sweep.config.errors import ConfigError
from sweep.report import cost as c
from sweep.noise import wilson_interval
from sweep.report.recommend import recommend
from sweep.report.stats import config_points, within_noise

GPU = dict(hardware="A100", price_per_device_hour=2.0, devices_per_trial=4, value_per_accuracy_point_per_month=100.0,
           monthly_requests=2_000_000, batch_size_inference=8, engineering_cost=1000.0, tolerance_points=1.0,
           horizon_months=12)


def test_unit_arithmetic():
    cfg = c.CostConfig(**GPU)
    assert c.training_cost(1800.0, cfg) == 4.0  # 0.5 h x $2 x 4 devices
    per_m = c.inference_cost_per_million(36.0, 8, cfg)  # 4.5 ms/request -> 1.25 h per million -> $2.5
    assert per_m == 2.5
    assert c.monthly_inference_cost(per_m, cfg) == 5.0  # 2M requests
    assert c.monthly_benefit(0.875, 0.75, cfg) == 1250.0  # 12.5 points x $100
    assert c.monthly_benefit(0.75, 0.875, cfg) == -1250.0
    fixed = c.CostConfig(**{**GPU, "value_per_accuracy_point_per_month": None, "monthly_benefit": 300.0})
    assert c.monthly_benefit(0.5, 0.9, fixed) == 300.0


def test_roi_and_payback():
    assert c.roi(1250.0, 5.0, 940.0, 12) == 14.0  # gained 15000, spent 940 + 60 = 1000
    assert c.roi(0.0, 5.0, 940.0, 12) == -1.0
    assert c.payback_months(2490.0, 1250.0, 5.0) == 2.0  # 2490 / (1250 - 5)
    assert c.payback_months(100.0, 5.0, 5.0) == math.inf  # net 0
    assert c.payback_months(100.0, 1.0, 5.0) == math.inf  # net < 0
    assert c.payback_months(0.0, 10.0, 5.0) == 0.0
    assert c.roi(10.0, 0.0, 0.0, 12) == math.inf and math.isnan(c.roi(0.0, 0.0, 0.0, 12))


def _frame():
    return pd.DataFrame({
        "trial": [0, 1, 2, 3, 4],
        "config_hash": ["aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc", "dddddddddddd", "aaaaaaaaaaaa"],
        "status": ["COMPLETE", "COMPLETE", "FAILED", "FAILED", "COMPLETE"],
        "reused_from": [None, None, None, None, 0],
        "train.seed": [1, 1, 1, 1, 1],
        "lora.r": [16, 4, 8, 2, 16],
        "train.eval_batch_size": [64, 64, 64, 64, 64],
        "eval_samples": [32.0, 32.0, np.nan, np.nan, 32.0],
        "eval_accuracy": [0.875, 0.75, 0.5, np.nan, 0.875],
        "trainable_params": [4000.0, 1000.0, 2000.0, np.nan, 4000.0],
        "train_time_s": [1800.0, 900.0, 900.0, np.nan, 1800.0],
        "merged_latency_p50_ms": [36.0, 18.0, np.nan, np.nan, 36.0],
    })


def test_sweep_total_counts_failed_trials_and_skips_reuses():
    cfg = c.CostConfig(**GPU)
    total, counted, unknown = c.sweep_total_cost(_frame(), cfg)
    assert (total, counted, unknown) == (4.0 + 2.0 + 2.0, 3, 1)  # trial 4 reused trial 0: no training


def test_add_costs_per_trial():
    cfg = c.CostConfig(**{**GPU, "batch_size_inference": None})  # batch = min(eval_batch_size 64, eval_samples 32)
    out = c.add_costs(_frame(), cfg)
    row = out.iloc[0]
    assert row["training_cost_usd"] == 4.0
    assert row["inference_usd_per_million"] == 0.625  # 36 ms / 32 = 1.125 ms/request -> 0.3125 h per million x $2
    assert row["monthly_inference_usd"] == 1.25
    assert row["monthly_total_usd"] == 1.25 + 4.0 / 12
    baseline, source = c.baseline_of(out, cfg)  # no baseline run recorded: the worst completed trial, said so
    assert (baseline == 0.75).all() and source.startswith("the worst completed trial")  # the failed trial's 0.5 is not one
    assert row["monthly_benefit_usd"] == 1250.0
    assert out.iloc[1]["monthly_benefit_usd"] == 0.0
    one_off = 8.0 + 1000.0  # sweep total + engineering
    assert row["roi"] == (1250.0 * 12 - (one_off + 1.25 * 12)) / (one_off + 1.25 * 12)
    assert row["payback_months"] == one_off / (1250.0 - 1.25)
    assert out.iloc[1]["payback_months"] == math.inf  # no benefit over the baseline, inference still costs


def test_recommendation_cheapest_pareto_point_within_tolerance():
    cfg = c.CostConfig(**GPU)
    frame = _frame()
    frame.loc[1, "eval_accuracy"] = 0.8671875  # 0.78 points below the best
    costs = c.add_costs(frame, cfg)
    points = config_points(costs, ["eval_accuracy", "trainable_params", "train_time_s", "merged_latency_p50_ms",
                                   "eval_samples", "monthly_total_usd", "roi", "payback_months"])
    rec = recommend(points, cfg, ["eval_accuracy"], one_off=1008.0)
    assert rec.best["trials"] == "#0" and rec.chosen["trials"] == "#1"
    assert "Recommended: #1 [bbbbbbbbbbbb]" in rec.text and "0.78 points below" in rec.text
    assert "The gap of 0.78 points is within the noise" in rec.text  # n=32: a 0.78-point gap is noise
    strict = c.CostConfig(**{**GPU, "tolerance_points": 0.5})
    assert recommend(points, strict, ["eval_accuracy"], one_off=1008.0).chosen["trials"] == "#0"


def test_the_baseline_run_is_the_roi_baseline_of_its_trials():
    cfg = c.CostConfig(**GPU)
    frame = _frame().assign(baseline_accuracy=[0.25, 0.25, 0.25, 0.25, 0.25])
    out = c.add_costs(frame, cfg)
    baseline, source = c.baseline_of(out, cfg)
    assert (baseline == 0.25).all() and source == "the base model without an adapter, measured once in this study"
    assert out.iloc[0]["monthly_benefit_usd"] == 100.0 * (0.875 - 0.25) * 100  # USD per point x points over the base
    fixed = c.CostConfig(**{**GPU, "baseline_accuracy": 0.5})
    assert (c.baseline_of(out, fixed)[0] == 0.5).all()  # a configured baseline wins


def test_a_saving_inside_the_noise_is_not_recommended():
    cfg = c.CostConfig(**{**GPU, "tolerance_points": 5.0})
    frame = _frame()
    frame.loc[1, ["eval_accuracy", "train_time_s", "merged_latency_p50_ms"]] = [0.8671875, 1700.0, 36.0]  # 5.6% faster
    points = config_points(c.add_costs(frame, cfg), ["eval_accuracy", "trainable_params", "train_time_s",
                                                     "merged_latency_p50_ms", "eval_samples", "monthly_total_usd"])
    rec = recommend(points, cfg, ["eval_accuracy"], one_off=0.0)
    assert rec.chosen["trials"] == rec.best["trials"]
    assert "indistinguishable in cost" in rec.text and "saving" not in rec.text
    frame.loc[1, "train_time_s"] = 1500.0  # 17% faster: beyond the 10% noise of train_time_s
    points = config_points(c.add_costs(frame, cfg), ["eval_accuracy", "trainable_params", "train_time_s",
                                                     "merged_latency_p50_ms", "eval_samples", "monthly_total_usd"])
    rec = recommend(points, cfg, ["eval_accuracy"], one_off=0.0)
    assert rec.chosen["trials"] == "#1" and "saving" in rec.text and "faster to train" in rec.text


def test_recommendation_tie_on_cost_goes_to_fewer_trainable_params():
    cfg = c.CostConfig(**{**GPU, "tolerance_points": 5.0})
    points = pd.DataFrame({"trials": ["#0", "#1", "#2"], "config_hash": ["a" * 12, "b" * 12, "c" * 12],
                           "eval_accuracy": [0.9, 0.89, 0.89], "trainable_params": [300.0, 200.0, 100.0],
                           "monthly_total_usd": [5.0, 1.0, 1.0], "train_time_s": [500.0, 100.0, 100.0],
                           "eval_n": [100.0] * 3})
    rec = recommend(points, cfg, ["eval_accuracy"], one_off=0.0)
    assert rec.chosen["trials"] == "#2"


def test_validation_reports_every_bad_key_on_its_own_line():
    with pytest.raises(ConfigError) as exc:
        c.CostConfig.from_dict({**GPU, "price_per_device_hour": -1, "devices_per_trial": 0, "monthly_benefit": 5.0,
                                "baseline_accuracy": 87})
    lines = str(exc.value).splitlines()
    for key in ("cost.price_per_device_hour", "cost.devices_per_trial", "cost.value_per_accuracy_point_per_month",
                "cost.baseline_accuracy"):
        assert any(line.startswith(key) for line in lines), (key, lines)
    with pytest.raises(ConfigError, match=r"cost.bogus: unknown key"):
        c.CostConfig.from_dict({**GPU, "bogus": 1})
    with pytest.raises(ConfigError, match=r"cost.monthly_requests: expected a number"):
        c.CostConfig.from_dict({**GPU, "monthly_requests": "lots"})


def test_cost_group_composes_with_hydra_and_overrides_apply():
    from sweep.config.compose import compose
    from sweep.config.cost import CostConfig

    local = compose([]).cost
    assert isinstance(local, CostConfig) and local.hardware == "local CPU" and local.price_per_device_hour == 0.05
    gpu = compose(["cost=a100_cloud", "cost.price_per_device_hour=2.5", "cost.baseline_accuracy=0.6"]).cost
    assert gpu.price_per_device_hour == 2.5 and gpu.baseline_accuracy == 0.6 and gpu.hardware.startswith("NVIDIA A100")
    assert compose(["cost=a100_cloud", "cost.monthly_requests=1e7"]).cost.monthly_requests == 1e7
    with pytest.raises(ConfigError, match="cost.price_per_device_hour"):
        compose(["cost.price_per_device_hour=-1"])
    with pytest.raises(ConfigError, match="cost.value_per_accuracy_point_per_month"):
        compose(["cost.monthly_benefit=100"])  # both benefit inputs set
    with pytest.raises(ConfigError, match=r"override 'cost=nope'"):
        compose(["cost=nope"])


def test_every_cost_key_has_a_comment_with_its_unit():
    from sweep.config.compose import conf_dir

    for f in sorted((conf_dir() / "cost").glob("*.yaml")):
        for line in f.read_text().splitlines():
            if line and not line.startswith("#"):
                assert "#" in line, f"{f.name}: {line!r} has no comment"


def test_wilson_interval_and_noise():
    lo, hi = wilson_interval(0.5, 100)  # textbook value: [0.4038, 0.5962]
    assert round(lo, 4) == 0.4038 and round(hi, 4) == 0.5962
    lo, hi = wilson_interval(0.865, 200)
    assert round(lo, 4) == 0.8107 and round(hi, 4) == 0.9055
    assert wilson_interval(1.0, 10)[1] == 1.0 and wilson_interval(0.0, 10)[0] == 0.0
    assert all(math.isnan(x) for x in wilson_interval(0.5, 0))
    # the one rule (sweep.noise.beyond_noise): the gap's own 95% interval, from both Wilson intervals. 0.80 lies just
    # outside 0.865's interval [0.8107, 0.9055] (the old "inside the best's interval" rule called it a real gap), but
    # the gap's interval [-0.0085, 0.1381] contains zero; 0.79 is beyond the noise
    assert within_noise(0.865, 200, 0.855, 200) and within_noise(0.865, 200, 0.80, 200)
    assert not within_noise(0.865, 200, 0.79, 200)
