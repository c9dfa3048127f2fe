"""A report built from synthetic MLflow runs written in the sweep's layout (parent + child runs, lorasweep.* tags).

The store is built once per module (creating an MLflow sqlite schema takes a few seconds); every test reads it.
"""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

import pytest
import yaml

STUDY = "synth"
PARENT_TAGS = {"lorasweep.role": "parent", "lorasweep.study": STUDY, "lorasweep.experiment": "synth_experiment",
               "lorasweep.objectives": "eval_accuracy,trainable_ratio", "lorasweep.group_by": "lora.targets",
               "tag.question": "qv or every linear layer?"}


def _metrics(acc, trainable, time_s, peak, latency=10.0, total=1_000_000):
    return {"eval_accuracy": acc, "eval_loss": 1.0 - acc, "eval_samples": 200.0, "trainable_params": float(trainable),
            "adapter_params": float(trainable), "total_params": float(total), "trainable_ratio": trainable / total,
            "adapter_size_mb": trainable * 4 / 2**20, "train_time_s": time_s, "train_samples_per_s": 100.0,
            "train_tokens_per_s": 2000.0, "train_loss": 0.5, "peak_memory_mb": peak, "peak_reserved_mb": peak + 100,
            "latency_p50_ms": latency * 1.2, "latency_p95_ms": latency * 1.5, "merged_latency_p50_ms": latency,
            "merged_latency_p95_ms": latency * 1.3, "merge_max_abs_diff": 1e-6}


# (trial, targets, r, seed, status, metrics, failure reason, reused_from)
TRIALS = [
    (0, "qv", 8, 42, "COMPLETE", _metrics(0.80, 20_000, 30.0, 500.0), "", None),
    (1, "all_linear", 8, 42, "COMPLETE", _metrics(0.86, 60_000, 60.0, 700.0), "", None),
    (2, "qv", 16, 42, "COMPLETE", _metrics(0.805, 40_000, 40.0, 550.0), "", None),
    (3, "all_linear", 16, 42, "COMPLETE", _metrics(0.865, 120_000, 90.0, 900.0), "", None),
    (4, "all_linear", 8, 43, "COMPLETE", _metrics(0.85, 60_000, 62.0, 700.0), "", None),
    (5, "qv", 4, 42, "FAILED", {"trainable_params": 10_000.0}, "OOM: CUDA out of memory (injected fault)", None),
    (6, "qv", 2, 42, "PRUNED", {"eval_accuracy": 0.5, "train_time_s": 10.0}, "pruned at step 50 (eval_accuracy 0.5000)", None),
    (7, "all_linear", 8, 42, "COMPLETE", _metrics(0.86, 60_000, 60.0, 700.0), "", 1),
]


def trial_config(targets: str, r: int, seed: int) -> dict:
    from sweep.config.schema import TrialConfig

    d = {"model": {"name": "tiny_bert", "source": "tiny", "arch": "bert", "hidden_size": 64, "num_heads": 2,
                   "intermediate_size": 128},
         "data": {"eval_size": 200}, "lora": {"r": r, "targets": targets}, "quant": {"method": "none"},
         "train": {"seed": seed, "threads": 1, "max_steps": 150}}
    return TrialConfig.from_dict(d).to_dict()


def write_trial_run(client, exp_id: str, parent_id: str, study: str, number: int, cfg: dict, status: str,
                    metrics: dict, reason: str = "", reused_from: int | None = None, device: str = "cpu:x86_64",
                    artifacts: bool = True) -> str:
    """One child run exactly as the sweep's worker writes it."""
    from mlflow.entities import Metric, Param

    from sweep.config.hashing import config_hash
    from sweep.tracking.base import flatten

    h = config_hash(cfg)
    tags = {"mlflow.parentRunId": parent_id, "lorasweep.role": "trial", "lorasweep.study": study,
            "lorasweep.trial_number": str(number), "lorasweep.config_hash": h, "lorasweep.status": status,
            "lorasweep.failure_reason": reason, "lorasweep.git_sha": "abc1234", "lorasweep.device": device,
            "lorasweep.seed": str(cfg["train"]["seed"])}
    if reused_from is not None:
        tags["lorasweep.reused_from"] = str(reused_from)
    run = client.create_run(exp_id, run_name=f"trial-{number:04d}-{h}", tags=tags)
    rid = run.info.run_id
    params = [Param(k, str(v)) for k, v in sorted(flatten(cfg).items())]
    for i in range(0, len(params), 90):
        client.log_batch(rid, params=params[i:i + 90])
    now = int(time.time() * 1000)
    batch = []
    if "eval_accuracy" in metrics and status == "COMPLETE":  # an intermediate evaluation below the final value
        batch.append(Metric("eval_accuracy", metrics["eval_accuracy"] - 0.2, now, 50))
    step = 150 if status == "COMPLETE" else 50
    batch += [Metric(k, float(v), now + 1, step) for k, v in metrics.items()]
    client.log_batch(rid, metrics=batch)
    if artifacts:
        client.log_text(rid, yaml.safe_dump(cfg, sort_keys=False), "config.yaml")
        client.log_text(rid, json.dumps({"status": status, "metrics": metrics, "error": reason or None}), "result.json")
    client.set_terminated(rid, status="FAILED" if status == "FAILED" else "FINISHED")
    return h


def make_store(root, trials=TRIALS, study=STUDY, parent_tags=PARENT_TAGS) -> tuple[str, dict[int, str]]:
    """A sqlite MLflow store under `root` with one study; returns (tracking URI, trial number -> config hash)."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment(study, artifact_location=(root / "artifacts" / study).as_uri())
    parent = client.create_run(exp, run_name=f"sweep:{study}", tags=parent_tags)
    client.log_param(parent.info.run_id, "sweep.n_trials", str(len(trials)))
    hashes = {}
    for number, targets, r, seed, status, metrics, reason, reused in trials:
        cfg = trial_config(targets, r, seed)
        hashes[number] = write_trial_run(client, exp, parent.info.run_id, study, number, cfg, status, metrics, reason,
                                         reused, artifacts=reused is None)
    client.set_terminated(parent.info.run_id, "FINISHED")
    return uri, hashes


_SHARED: dict[str, tuple[str, dict[int, str]]] = {}


def shared_store(tmp_path_factory) -> tuple[str, dict[int, str]]:
    """The synthetic store, built once per test session and only read by the tests (creating the schema is slow)."""
    if "store" not in _SHARED:
        _SHARED["store"] = make_store(tmp_path_factory.mktemp("mlstore"))
    return _SHARED["store"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return shared_store(tmp_path_factory)


@pytest.fixture(scope="module")
def report(store, tmp_path_factory):
    from sweep.config.cost import CostConfig
    from sweep.report.render import build_report

    out = tmp_path_factory.mktemp("reports")
    cost = CostConfig(hardware="test cpu", price_per_device_hour=3.6, value_per_accuracy_point_per_month=10.0,
                      monthly_requests=1_000_000, batch_size_inference=10, tolerance_points=1.0)
    return build_report(STUDY, cost, store[0], out)


def test_loaded_frame_has_one_row_per_trial_with_final_values(store):
    from sweep.report.load import load_study

    study = load_study(STUDY, store[0])
    f = study.trials
    assert list(f["trial"]) == list(range(8))
    assert study.objectives == ["eval_accuracy", "trainable_ratio"] and study.group_by == ["lora.targets"]
    assert f.loc[0, "eval_accuracy"] == 0.80  # the final value, not the step-50 evaluation
    assert f.loc[5, "status"] == "FAILED" and "OOM" in f.loc[5, "failure_reason"]
    assert f.loc[6, "status"] == "PRUNED"
    assert f.loc[7, "reused_from"] == 1 and f.loc[7, "config_hash"] == f.loc[1, "config_hash"]
    assert f.loc[0, "lora.r"] == 8 and f.loc[0, "lora.targets"] == "qv" and f.loc[0, "lora.band_ranks"] is None
    assert f.loc[0, "schedule"] == "uniform"


def test_report_lists_every_trial_and_writes_png_and_html(report, store):
    _, hashes = store
    names = {p.name for p in report.pngs}
    assert {"pareto_trainable_ratio.png", "pareto_latency_p50_ms.png", "pareto_peak_memory_mb.png",
            "pareto_training_cost_usd.png", "groups_eval_accuracy.png"} <= names
    for png in report.pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with report.csv.open() as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(int(r["trial"]) for r in rows) == list(range(8))
    md = report.markdown.read_text()
    html = report.html.read_text()
    for h in hashes.values():
        assert h in md and h in html
    assert "OOM: CUDA out of memory" in md and "pruned at step 50" in md
    assert html.count("data:image/png;base64,") == len(report.pngs)
    assert "src=\"http" not in html and "<style>" in html
    for png in report.pngs:
        assert f"]({png.name})" in md


def test_grouped_comparison_leaves_out_reused_copies(store):
    from sweep.report import tables
    from sweep.report.load import load_study

    frame = load_study(STUDY, store[0]).trials
    g = tables.group_table(frame, ["lora.targets"]).set_index("lora.targets")
    al = g.loc["all_linear"]
    assert al["trials"] == 4 and al["n"] == 3 and al["not_complete"] == 0  # trial 7 (reused) not counted in n
    assert al["best eval_accuracy"] == 0.865
    assert al["mean eval_accuracy"] == pytest.approx((0.86 + 0.865 + 0.85) / 3, abs=1e-12)
    qv = g.loc["qv"]
    assert qv["trials"] == 4 and qv["n"] == 2 and qv["not_complete"] == 2
    assert list(g.index) == ["all_linear", "qv"]  # best mean first


def test_recommendation_names_the_cheaper_config_within_tolerance_and_noise(report):
    md = report.markdown.read_text()
    rec = md.split("## Recommendation", 1)[1].split("\n## ", 1)[0]
    assert "Best accuracy: #3" in rec
    assert "Recommended: #1, #4" in rec  # the two seeds of all_linear r=8, mean 0.855, 1.0 point below
    assert "points is within the noise (its 95% interval" in rec


def test_cli_prints_paths_and_applies_cost_overrides(store, tmp_path, capsys):
    from sweep.report.__main__ import main

    rc = main([STUDY, "cost.price_per_device_hour=7.2", "cost.devices_per_trial=2", "--tracking-uri", store[0],
               "--out", str(tmp_path)])
    assert rc == 0
    printed = capsys.readouterr().out.split()
    assert str(tmp_path / STUDY / "report.html") in printed and all(Path(p).is_file() for p in printed)
    with (tmp_path / STUDY / "trials.csv").open() as fh:
        row = next(r for r in csv.DictReader(fh) if r["trial"] == "0")
    assert float(row["training_cost_usd"]) == 30.0 / 3600 * 7.2 * 2


def test_unknown_study_lists_the_existing_ones(store):
    from sweep.report.load import ReportError, load_study

    with pytest.raises(ReportError) as exc:
        load_study("nope", store[0])
    assert "'nope'" in str(exc.value) and STUDY in str(exc.value) and "\n" not in str(exc.value)


@pytest.fixture
def no_mlflow_engine_for(monkeypatch):
    """The sqlite paths MLflow was asked to make an engine for. A process that ran a sweep has sweep.sqlite.tune()'s
    pragmas on every sqlite connection: on a corrupt file they fail MLflow's engine probe, which MLflow retries with
    sleeps for ~100 s (10 attempts); the store must be checked, and the error given, before MLflow is reached."""
    import mlflow.store.db.utils as db_utils

    from sweep import sqlite

    sqlite.tune()  # what every sweep (and every earlier test that ran one) leaves in the process
    asked: list[str] = []

    def spy(db_uri):  # fails at once rather than sleeping through the retries
        asked.append(db_uri)
        raise RuntimeError("MLflow was asked to create an engine")

    monkeypatch.setattr(db_utils, "create_sqlalchemy_engine_with_retry", spy)
    return asked


def test_missing_and_corrupt_store_give_one_line_with_the_fix(tmp_path, no_mlflow_engine_for):
    from sweep.report.load import ReportError, load_study

    with pytest.raises(ReportError, match="does not exist"):
        load_study(STUDY, f"sqlite:///{tmp_path}/absent.db")
    bad = tmp_path / "mlflow.db"
    bad.write_bytes(b"this is not a sqlite database" * 20)
    t0 = time.perf_counter()
    with pytest.raises(ReportError) as exc:
        load_study(STUDY, f"sqlite:///{bad}")
    assert time.perf_counter() - t0 < 10  # MLflow's retry loop would take ~100 s
    text = str(exc.value)
    assert "\n" not in text and str(bad) in text and "mv " in text and "not a usable sqlite database" in text
    assert not no_mlflow_engine_for, "the corrupt store reached MLflow (and its engine-creation retry loop)"


def test_cli_error_exit_code(tmp_path, capsys, no_mlflow_engine_for):
    from sweep.report.__main__ import main

    assert main(["x", "--tracking-uri", f"sqlite:///{tmp_path}/absent.db"]) == 2
    assert "error:" in capsys.readouterr().err
    bad = tmp_path / "mlflow.db"
    bad.write_bytes(b"\0" * 4096)
    assert main(["x", "--tracking-uri", f"sqlite:///{bad}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot read the MLflow store") and err.count("\n") == 1 and f"mv {bad}" in err
    assert not no_mlflow_engine_for


def _memory_run(number: int, status_tag: str, run_status: str, cfg: dict, metrics: dict, reason: str = "",
                extra_tags: dict[str, str] | None = None):
    """An MLflow Run object built in memory (no store): the loader's input."""
    from mlflow.entities import Metric, Param, Run, RunData, RunInfo, RunTag

    from sweep.config.hashing import config_hash
    from sweep.tracking.base import flatten

    tags = {"lorasweep.role": "trial", "lorasweep.trial_number": str(number), "lorasweep.config_hash": config_hash(cfg),
            "lorasweep.failure_reason": reason, **(extra_tags or {})}
    if status_tag:
        tags["lorasweep.status"] = status_tag
    info = RunInfo(f"run{number}", "1", "user", run_status, 1000 + number, None, "active", run_name=f"trial-{number:04d}")
    data = RunData(metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()],
                   params=[Param(k, str(v)) for k, v in flatten(cfg).items()], tags=[RunTag(k, v) for k, v in tags.items()])
    return Run(info, data)


def test_report_of_a_study_where_nothing_completed(tmp_path):
    from sweep.config.cost import CostConfig
    from sweep.report.load import Study, runs_frame
    from sweep.report.render import write_report

    runs = [_memory_run(0, "FAILED", "FAILED", trial_config("qv", 4, 1), {}, "OOM: CUDA out of memory"),
            _memory_run(1, "", "FAILED", trial_config("qv", 8, 1), {"train_time_s": 5.0}),  # worker died before tagging
            _memory_run(2, "RUNNING", "RUNNING", trial_config("all_linear", 8, 1), {})]
    frame = runs_frame(runs)
    assert list(frame["status"]) == ["FAILED", "FAILED", "RUNNING"]
    assert frame.loc[1, "failure_reason"].startswith("no reason recorded")
    study = Study("dead", "sqlite:///nowhere.db", "1", "dead", ["eval_accuracy"], ["lora.targets"], frame)
    files = write_report(study, CostConfig(price_per_device_hour=3.6, value_per_accuracy_point_per_month=1.0), tmp_path)
    md = files.markdown.read_text()
    assert "nothing to recommend" in md and "OOM: CUDA out of memory" in md and "no reason recorded" in md
    assert "RUNNING" in md and files.html.is_file() and files.pngs == []
    assert "$0.005 over 1 trial run with a known train time" in md  # the failed trial's 5 s at $3.6/h still cost money


def test_memory_kind_of_a_device_decides_whether_a_prediction_is_judged():
    from sweep.measure.memory import CPU_RSS_DELTA, CUDA_ALLOCATED, memory_kind

    assert memory_kind("cuda") == memory_kind("cuda:1") == memory_kind("cuda:NVIDIA H200") == CUDA_ALLOCATED
    assert memory_kind("cpu") == memory_kind("cpu:x86_64") == CPU_RSS_DELTA and memory_kind("") == ""


def _predicted_frame():
    from sweep.report.load import runs_frame

    gpu, cpu = {"lorasweep.device": "cuda:NVIDIA H200"}, {"lorasweep.device": "cpu:x86_64"}
    runs = [
        _memory_run(0, "COMPLETE", "FINISHED", trial_config("qv", 2, 1),
                    {"predicted_peak_memory_mb": 110.0, "peak_memory_mb": 100.0}, extra_tags=gpu),  # +10%
        _memory_run(1, "COMPLETE", "FINISHED", trial_config("qv", 4, 1),
                    {"predicted_peak_memory_mb": 90.0, "peak_memory_mb": 120.0}, extra_tags=gpu),  # -25%
        _memory_run(2, "PRUNED", "FINISHED", trial_config("qv", 8, 1),
                    {"predicted_peak_memory_mb": 200.0, "peak_memory_mb": 160.0}, extra_tags=gpu),  # +25%
        _memory_run(3, "FAILED", "FAILED", trial_config("qv", 16, 1), {"predicted_peak_memory_mb": 30_000.0},
                    "OOM: CUDA out of memory", extra_tags=gpu),  # no measured peak: shown, not counted
        _memory_run(4, "COMPLETE", "FINISHED", trial_config("all_linear", 2, 1),
                    {"predicted_peak_memory_mb": 10.25, "peak_memory_mb": 59.0}, extra_tags=cpu),  # RSS: not judged
        _memory_run(5, "COMPLETE", "FINISHED", trial_config("qv", 2, 1),
                    {"predicted_peak_memory_mb": 110.0, "peak_memory_mb": 100.0},
                    extra_tags={**gpu, "lorasweep.reused_from": "0"}),  # a copy of trial 0: left out
        _memory_run(6, "COMPLETE", "FINISHED", trial_config("all_linear", 4, 1), {"peak_memory_mb": 70.0},
                    extra_tags=gpu),  # from before the planner ran in the trial: left out
    ]
    return runs_frame(runs)


def test_predicted_memory_is_judged_on_cuda_rows_only():
    from sweep.report import tables

    judged, unjudged = tables.memory_prediction_tables(_predicted_frame())
    assert list(judged["trial"]) == [0, 1, 2, 3] and list(unjudged["trial"]) == [4]
    assert list(judged["predicted_peak_memory_mb"]) == [110.0, 90.0, 200.0, 30_000.0]
    err = judged["relative_error"]
    assert list(err[:3]) == [(110.0 - 100.0) / 100.0, -0.25, 0.25] and math.isnan(err[3])
    assert err.abs().median() == 0.25
    assert "relative_error" not in unjudged and "peak_memory_mb" not in unjudged
    assert list(unjudged["predicted_peak_memory_mb"]) == [10.25]


def test_report_block_shows_predicted_vs_measured_and_the_median_error():
    from sweep.report import sections
    from sweep.report.blocks import to_markdown

    md = to_markdown(sections.memory_prediction(_predicted_frame()))
    assert md.startswith("## Memory: predicted vs measured")
    gpu, cpu = md.split("CPU trials:", 1)
    assert "median absolute relative error 25.0% over 3 trials" in gpu
    assert "| 0 |" in gpu and "| 110.00 | 100.00 | +10.0% |" in gpu and "| -25.0% |" in gpu
    assert "| 30,000.00 | – | – |" in gpu  # the OOM trial: its prediction, nothing to judge it against
    assert "resident memory" in cpu and "not judged" in cpu and "relative_error" not in cpu and "| 10.25 |" in cpu
    assert "| peak_memory_mb (MiB)" not in cpu  # the CPU table: the prediction only


def test_report_of_trials_without_predictions_says_so(report):
    md = report.markdown.read_text()
    block = md.split("## Memory: predicted vs measured", 1)[1].split("\n## ", 1)[0]
    assert "No trial recorded predicted_peak_memory_mb" in block
