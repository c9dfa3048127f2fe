"""Search-space sampling, conditional parameters, grids, and worker placement."""

from __future__ import annotations

import optuna
import pytest

from sweep.config.compose import compose, trial_dict
from sweep.config.run_schema import ParamSpec
from sweep.config.schema import TrialConfig
from sweep.orchestration import space as sp
from sweep.gpus import visible_gpus
from sweep.orchestration.pool import plan_workers


def _sample(space, base, n=30, seed=0):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        t = study.ask()
        out.append(sp.suggest(t, space, base))
        study.tell(t, 0.0)
    return out


def test_layerwise_experiment_conditional_band_ranks_compose():
    run = compose(["+experiment=layerwise_ranks"])
    base = {g: run.raw[g] for g in ("model", "data", "lora", "quant", "train")}
    seen = set()
    for params in _sample(run.sweep.space, base):
        seen.add(params["lora"])
        if params["lora"] == "layerwise":
            assert "lora.r" not in params and {"lora.band_ranks.0", "lora.band_ranks.2"} <= set(params)
        else:
            assert "lora.r" in params and not any(k.startswith("lora.band_ranks") for k in params)
        cfg = TrialConfig.from_dict(trial_dict(run.overrides, params, sp.group_params(run.sweep.space)))
        if params["lora"] == "layerwise":
            assert cfg.lora.band_ranks == [params[f"lora.band_ranks.{i}"] for i in range(3)]
            assert cfg.lora.targets == "all_linear" and cfg.lora.alpha_ratio == 2
        else:
            assert cfg.lora.band_ranks is None and cfg.lora.r == params["lora.r"]
    assert seen == {"all_linear", "layerwise"}


def test_group_param_switches_the_config_group():
    run = compose(["+experiment=qlora_vs_lora"])
    for q in ("none", "nf4", "fp4"):
        cfg = TrialConfig.from_dict(trial_dict(run.overrides, {"quant": q, "lora.r": 4}, {"quant"}))
        assert cfg.quant.method == q and cfg.lora.r == 4
        assert cfg.quant.double_quant == (q == "nf4")


def test_list_choices_round_trip():
    space = {"lora.targets": ParamSpec(type="categorical", choices=[["query", "value"], "all_linear"])}
    values = [p["lora.targets"] for p in _sample(space, {}, n=20)]
    assert ["query", "value"] in values and "all_linear" in values


def test_grid_is_the_product_and_rejects_conditions():
    space = {"a": ParamSpec(type="int", low=1, high=4, step=1), "b": ParamSpec(type="categorical", choices=[True, False])}
    assert sp.grid(space) == {"a": [1, 2, 3, 4], "b": [True, False]} and sp.grid_size(space) == 8
    with pytest.raises(ValueError, match="conditional"):
        sp.grid({"a": ParamSpec(type="categorical", choices=[1], when={"x": 1})})


def test_workers_one_per_visible_gpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert visible_gpus() == ["3", "5"]
    assert [g for g, _ in plan_workers("auto", 1, 0)] == ["3", "5"]
    assert [g for g, _ in plan_workers("auto", 2, 0)] == ["3", "3", "5", "5"]
    assert [g for g, _ in plan_workers(3, 1, 0)] == ["3", "5", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")  # the CUDA convention for "no GPU"
    assert visible_gpus() == []


def test_cpu_workers_share_the_cores(monkeypatch):
    import os

    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert plan_workers("auto", 1, 0, gpus=[]) == [(None, 2)] * 4
    assert plan_workers(2, 1, 0, gpus=[]) == [(None, 4)] * 2
    assert plan_workers(3, 1, 1, gpus=[]) == [(None, 1)] * 3


def test_a_proposal_written_at_once_is_what_ask_and_suggest_leave(tmp_path):
    """A question arm's proposal becomes the main study's trial in one write (SweepStudy.create_running): the same
    parameters and distributions that ask + suggest would record (conditional ones only when active, list choices
    as JSON text), RUNNING, with its attributes; and the per-arm count comes from the same read as the states."""
    from sweep.orchestration import records as R
    from sweep.orchestration.arms import Arms
    from sweep.orchestration.study import SweepStudy

    run = compose(["+experiment=layerwise_ranks"])
    base = {g: run.raw[g] for g in ("model", "data", "lora", "quant", "train")}
    reference = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    main = SweepStudy(run.sweep, "main", f"sqlite:///{tmp_path / 'study.db'}")
    for _ in range(12):
        asked = reference.ask()
        params = sp.suggest(asked, run.sweep.space, base)
        written = main.create_running(sp.encoded(params), sp.distributions(run.sweep.space, params, base),
                                      owner="here", arm=f"lora={params['lora']}", arm_trial=7)
        frozen = main.trial(written.number)
        assert frozen.state == optuna.trial.TrialState.RUNNING
        assert frozen.params == asked.params and frozen.distributions == asked.distributions
        assert frozen.user_attrs == {"arm": f"lora={params['lora']}", "arm_trial": 7, "owner": "here"}
    main.study.tell(0, state=optuna.trial.TrialState.FAIL)  # a failed trial no longer fills its arm
    counts = main.counts(R.ARM)
    assert counts["RUNNING"] == 11 and counts["FAIL"] == 1
    assert sum(counts.filled.values()) == 11 and len(counts.filled) == len({t.params["lora"] for t in main.trials()})

    smoke = compose(["+experiment=smoke"]).sweep  # two arms, 3 trials each
    arms = Arms(smoke, SweepStudy(smoke, "smoke", f"sqlite:///{tmp_path / 'smoke.db'}"))
    assert arms.choose({}).label == "lora.targets=qv"
    assert arms.choose({"lora.targets=qv": 2, "lora.targets=all_linear": 1}).label == "lora.targets=all_linear"
    assert arms.choose({"lora.targets=qv": 3, "lora.targets=all_linear": 3}) is None
