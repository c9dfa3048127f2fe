"""Serving several studies' adapters on one base (sweep.multitask), on tiny studies tracked in a temporary MLflow store."""

from __future__ import annotations

import math

import pytest

from multitask_studies import make_study
from sweep.multitask import MultitaskError
from sweep.multitask.run import ServeSettings, serve

FAST = ServeSettings(switch_iters=5, latency_warmup=0, latency_iters=3, measure_memory=False, device="cpu")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Three tiny studies: intent (6 labels), review (4 labels; a LoRA and a DoRA trial), and one on a wider base."""
    root = tmp_path_factory.mktemp("multitask")
    uri = f"sqlite:///{root}/mlflow.db"
    hashes = {"t_intent": make_study(uri, root, "t_intent", [[]]),
              "t_review": make_study(uri, root, "t_review", [["data=review"], ["data=review", "lora=dora", "train.max_steps=2"]]),
              "t_wide": make_study(uri, root, "t_wide", [["model.hidden_size=128", "model.intermediate_size=256", "train.max_steps=1", "train.eval_every=0"]])}
    return root, uri, hashes


def _serve(store, studies, hashes):
    from sweep.config.compose import compose

    root, uri, _ = store
    return serve(studies, hashes=hashes, tracking_uri=uri, sweeps_dir=root / "sweeps", out_root=root / "reports",
                 cost=compose([]).cost, settings=FAST, artifact_location=str(root / "artifacts"), log=lambda m: None)


@pytest.fixture(scope="module")
def served(store):
    return _serve(store, ["t_intent", "t_review"], {"t_review": store[2]["t_review"][0]})


def _trial_runs(uri: str, study: str) -> dict[str, object]:
    from mlflow.tracking import MlflowClient

    c = MlflowClient(uri)
    exp = c.get_experiment_by_name(study)
    return {r.data.tags["lorasweep.config_hash"]: r for r in c.search_runs([exp.experiment_id])
            if r.data.tags.get("lorasweep.role") == "trial"}


def test_each_adapter_reproduces_its_study_accuracy_exactly(served, store):
    result, _ = served
    _, uri, hashes = store
    assert [c.study for c in result.correctness] == ["t_intent", "t_review"]
    for c, h in zip(result.correctness, (hashes["t_intent"][0], hashes["t_review"][0])):
        recorded = _trial_runs(uri, c.study)[h].data.metrics
        assert c.served_accuracy == recorded["eval_accuracy"], c  # bit-identical on CPU
        assert c.served_loss == recorded["eval_loss"], c
        assert c.exact and c.eval_n == 32
    assert [a.labels for a in result.adapters] == [6, 4]  # two heads of different sizes on one base


def test_mixed_batch_equals_the_per_adapter_outputs_row_by_row(served):
    result, _ = served
    m = result.mixed
    assert m is not None and m.rows == 16
    assert m.exact and m.predictions_equal and m.max_abs_diff == 0.0
    assert "grouped by adapter for the heads" in m.path  # 6 vs 4 labels: PEFT's stacked heads would fail
    assert "mixed_batch_heads" in result.features and "mixed_batch" not in result.features
    assert m.mixed.p50_ms > 0 and m.grouped.p50_ms > 0


def test_serving_run_is_logged_and_linked_to_the_trial_runs(served, store):
    from mlflow.tracking import MlflowClient

    result, files = served
    _, uri, hashes = store
    c = MlflowClient(uri)
    run = c.get_run(result.run_id)
    assert run.info.run_name == "serve:t_intent+t_review" and run.info.status == "FINISHED"
    assert c.get_experiment(run.info.experiment_id).name == "multitask"
    tags = run.data.tags
    assert tags["lorasweep.role"] == "serve" and tags["lorasweep.serve.studies"] == "t_intent,t_review"
    for study in ("t_intent", "t_review"):
        h = hashes[study][0]
        assert tags[f"lorasweep.serve.{study}.config_hash"] == h
        assert tags[f"lorasweep.serve.{study}.run_id"] == _trial_runs(uri, study)[h].info.run_id
    assert run.data.metrics["serve_exact_tasks"] == 2.0 and "switch_p50_ms" in run.data.metrics
    assert {a.path for a in c.list_artifacts(result.run_id)} >= {"report.md", "report.html", "serving.json"}
    md = next(f for f in files if f.name == "report.md").read_text()
    assert "## Serving 2 tasks" in md and "### Recommendation" in md and result.run_id in md
    assert result.recommendation.startswith(("Ship one base + 2 adapters", "Ship 2 merged models"))


def test_dora_adapter_is_served_but_mixed_batches_are_reported_unsupported(store):
    result, _ = _serve(store, ["t_intent", "t_review"], {"t_review": store[2]["t_review"][1]})
    assert result.mixed is None
    assert "DoRA" in result.features["mixed_batch"]
    assert result.all_exact  # set_adapter serving of a DoRA adapter still reproduces its study


def test_study_on_another_base_is_refused_with_one_line(store, capsys):
    from sweep.multitask.__main__ import main

    root, uri, _ = store
    code = main(["t_intent", "t_wide", "--tracking-uri", uri, "--sweeps-dir", str(root / "sweeps"),
                 "--out", str(root / "reports"), "--no-memory"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert err.startswith("error: study 't_wide': model.hidden_size=128 differs from 64 in study 't_intent' (")


def test_bad_options_are_one_line_errors(store, capsys):
    from sweep.multitask.__main__ import main

    root, uri, _ = store
    for argv, needle in ((["t_intent", "t_review", "--hash", "t_other=abcd"], "--hash t_other"),
                         (["t_intent", "t_review", "--hash", "t_review"], "expected STUDY=PREFIX"),
                         (["t_intent", "t_intent"], "given twice"),
                         (["t_intent", "t_review", "--share", "t_review=x"], "--share t_review=x"),
                         (["t_intent", "nope"], "no study 'nope'")):
        assert main([*argv, "--tracking-uri", uri, "--sweeps-dir", str(root / "sweeps"), "--no-memory"]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, (argv, err)


def test_adalora_and_pissa_are_refused_before_loading(compose_trial):
    from sweep.multitask.compat import check_compatible
    from sweep.multitask.select import Chosen

    def chosen(name, *overrides):
        return Chosen(study=name, config_hash="0" * 12, how="given", config=compose_trial("model=tiny_bert", *overrides),
                      metrics={}, meta={}, adapter_dir=None, source="")

    with pytest.raises(MultitaskError, match=r"^study 'b': lora.method=adalora: PEFT cannot reload"):
        check_compatible([chosen("a"), chosen("b", "lora=adalora")])
    with pytest.raises(MultitaskError, match=r"^study 'b': lora.init=pissa rewrites the base weights"):
        check_compatible([chosen("a"), chosen("b", "lora.init=pissa")])
    with pytest.raises(MultitaskError, match=r"^study 'b': quant.method='nf4' differs from 'none' in study 'a'"):
        check_compatible([chosen("a"), chosen("b", "quant=nf4")])
    with pytest.raises(MultitaskError, match=r"^study 'b': train.seed=7 differs .* tiny models draw their base weights"):
        check_compatible([chosen("a"), chosen("b", "train.seed=7")])
    check_compatible([chosen("a"), chosen("b", "data=review", "lora.r=2")])  # same base, other task: fine


def test_pricing_arithmetic_is_exact():
    from sweep.multitask import pricing
    from sweep.report.cost import CostConfig

    cost = CostConfig(price_per_device_hour=2.0, monthly_requests=3.6e9, value_per_accuracy_point_per_month=1.0)
    p = pricing.price(cost=cost, batch=10, switch_ms=1.0, shares=pricing.even_shares(["a", "b"], {"a": 3}),
                      unmerged_ms={"a": 11.0, "b": 5.0}, merged_ms={"a": 10.0, "b": 4.0}, device_memory_mb=1000.0)
    a, b = p.tasks
    assert (a.share, b.share) == (0.75, 0.25) and (a.requests, b.requests) == (2.7e9, 9e8)
    assert a.merged_hours == 2.7e9 / 10 * 10.0 / 3.6e6 == 750.0 and a.merged_devices == 2  # 750 h > 730 h
    assert b.merged_hours == 100.0 and b.merged_devices == 1
    assert p.shared_hours == 2.7e8 * 12.0 / 3.6e6 + 9e7 * 6.0 / 3.6e6 == 1050.0 and p.shared_devices == 2
    assert (p.merged_devices, p.shared_monthly_usd, p.merged_monthly_usd) == (3, 2 * 730 * 2.0, 3 * 730 * 2.0)
    assert p.saving_usd == 1460.0 and p.shared_compute_usd == 2100.0 and p.merged_compute_usd == 1700.0
    assert pricing.fits(1000.0, 400.0, 0.5) == 1200 and pricing.fits(1000.0, 0.0, 300.0) == 3
    assert pricing.devices_for(0.0) == 1 and pricing.devices_for(730.0) == 1 and pricing.devices_for(730.1) == 2


def test_median_interval_uses_the_binomial_order_statistics():
    from sweep.multitask.noise import differ, timing

    t = timing([float(x) for x in range(1, 31)])  # n=30: ranks 10 and 21, coverage 0.957
    assert (t.ci_low_ms, t.ci_high_ms) == (10, 21) and t.coverage == pytest.approx(0.9572, abs=1e-4)
    t = timing([5.0, 1.0, 3.0])  # too few for a 95% interval: none, and none claimed
    assert math.isnan(t.ci_low_ms) and t.coverage == 0.0
    a, b, c = timing([1.0] * 10 + [2.0] * 10), timing([1.5] * 20), timing([9.0, 10.0] * 10)
    assert not differ(a, b) and differ(a, c) and math.isfinite(a.p95_ms)


@pytest.mark.slow
def test_memory_of_one_base_with_adapters_is_below_k_merged_models(store):
    from sweep.multitask.memory import measure_all
    from sweep.multitask.select import choose
    from sweep.config.compose import compose

    root, uri, hashes = store
    chosen = choose(["t_intent", "t_review"], {"t_review": hashes["t_review"][0]}, tracking_uri=uri,
                    sweeps_dir=root / "sweeps", dest=root / "mem", cost=compose([]).cost)
    m = measure_all(chosen, "cpu", root / "mem")
    assert 0 <= m.adapter_mb < m.merged_each_mb
    assert m.stack_mb < m.merged_mb
