"""Reproduce: bad, short, unknown and ambiguous prefixes fail with one clear line; the matching logic is checked
with a stand-in for run_trial (no model is trained here)."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from sweep import reproduce as rp
from sweep.results import TrialResult, TrialStatus
from test_report import STUDY, TRIALS, shared_store, trial_config

CPU_METRICS = {"eval_accuracy": 0.8125, "eval_loss": 0.4321, "train_loss": 0.51, "eval_samples": 32.0,
               "trainable_params": 1234.0, "adapter_params": 1234.0, "total_params": 99999.0, "train_time_s": 10.0,
               "peak_memory_mb": 300.0, "merged_latency_p50_ms": 4.0}


def _folder(root, study: str, number: int, h: str, cfg: dict, metrics: dict, status="COMPLETE", device="cpu:x86_64"):
    d = root / study / "trials" / f"{number:04d}-{h}"
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (d / "result.json").write_text(json.dumps({"status": status, "metrics": metrics, "error": None}))
    (d / "meta.json").write_text(json.dumps({"device": device}))
    return d


def _fake_runner(metrics: dict, status=TrialStatus.COMPLETE, device="cpu:x86_64", calls=None):
    def run(cfg, *, output_dir=None):
        if calls is not None:
            calls.append((cfg, output_dir))
        return TrialResult(status, dict(metrics), None, meta={"device": device})

    return run


@pytest.fixture
def no_store(tmp_path):
    return f"sqlite:///{tmp_path}/absent/mlflow.db"


@pytest.mark.parametrize("prefix, words", [("abc", "too short"), ("", "too short"), ("zz12", "not hexadecimal"),
                                           ("ab%_", "not hexadecimal"), ("0123456789abc", "longer than a config hash")])
def test_bad_prefixes(prefix, words, tmp_path, no_store):
    with pytest.raises(rp.ReproduceError, match=words) as exc:
        rp.find_original(prefix, no_store, tmp_path)
    assert "\n" not in str(exc.value)


def test_unknown_prefix_names_both_places_searched(tmp_path, no_store, capsys):
    with pytest.raises(rp.ReproduceError) as exc:
        rp.find_original("abcd", no_store, tmp_path)
    text = str(exc.value)
    assert "'abcd'" in text and no_store in text and str(tmp_path) in text and "\n" not in text
    assert rp.main(["abcd", "--tracking-uri", no_store, "--sweeps-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: no trial with a config hash starting 'abcd'")


def test_ambiguous_prefix_lists_the_candidates(tmp_path, no_store):
    cfg = trial_config("qv", 8, 42)
    _folder(tmp_path, "s1", 0, "abcd00000001", cfg, CPU_METRICS)
    _folder(tmp_path, "s2", 3, "abcd00000002", cfg, CPU_METRICS)
    with pytest.raises(rp.ReproduceError) as exc:
        rp.find_original("ABCD", no_store, tmp_path)
    text = str(exc.value)
    assert "ambiguous" in text and "abcd00000001" in text and "abcd00000002" in text and "study s2, trial 3" in text
    assert "\n" not in text
    assert rp.find_original("abcd00000002", no_store, tmp_path).source.study == "s2"  # a longer prefix resolves it


def test_folder_trial_reproduced_exactly_on_cpu(tmp_path, no_store, monkeypatch, capsys):
    from sweep.config.hashing import config_hash

    cfg = trial_config("qv", 8, 42)
    h = config_hash(cfg)
    _folder(tmp_path, "s1", 2, h, cfg, CPU_METRICS)
    calls = []
    rerun = {**CPU_METRICS, "train_time_s": 12.0, "peak_memory_mb": 330.0}
    monkeypatch.setattr("sweep.trial.run_trial", _fake_runner(rerun, calls=calls))
    rc = rp.main([h[:6], "--tracking-uri", no_store, "--sweeps-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert calls and calls[0][0].to_dict() == cfg and calls[0][1] == tmp_path / "reproduce" / h
    assert "ratio x1.2" in out and "ratio x1.1" in out  # timing and memory shown, not judged
    assert "must match exactly" in out and "reproduced: all 8 judged values match" in out  # status + 7 metrics


def test_any_difference_in_a_deterministic_metric_fails_on_cpu(tmp_path, no_store, monkeypatch, capsys):
    from sweep.config.hashing import config_hash

    cfg = trial_config("qv", 8, 42)
    _folder(tmp_path, "s1", 2, config_hash(cfg), cfg, CPU_METRICS)
    rerun = {**CPU_METRICS, "eval_loss": CPU_METRICS["eval_loss"] + 1e-12}
    monkeypatch.setattr("sweep.trial.run_trial", _fake_runner(rerun))
    rc = rp.main([config_hash(cfg), "--tracking-uri", no_store, "--sweeps-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 1 and "NOT REPRODUCED: 1 of 8" in out and "(eval_loss)" in out


def test_gpu_tolerances():
    orig = {"eval_accuracy": 0.80, "eval_loss": 1.0, "trainable_params": 10.0}
    ok = rp.compare(orig, {"eval_accuracy": 0.805, "eval_loss": 1.0005, "trainable_params": 10.0}, gpu=True)
    assert all(r.ok for r in ok)
    bad = rp.compare(orig, {"eval_accuracy": 0.82, "eval_loss": 1.002, "trainable_params": 11.0}, gpu=True)
    assert [r.metric for r in bad if not r.ok] == ["eval_accuracy", "eval_loss", "trainable_params"]
    assert not all(r.ok for r in rp.compare(orig, {**orig, "eval_accuracy": 0.805}, gpu=False))


def test_status_and_missing_metrics_are_judged():
    rows = rp.compare({"eval_accuracy": 0.5, "train_time_s": 3.0}, {"train_time_s": 6.0, "eval_loss": 1.0}, gpu=False,
                      original_status="COMPLETE", rerun_status="FAILED")
    by = {r.metric: r for r in rows}
    assert not by["status"].ok and not by["eval_accuracy"].ok and by["eval_accuracy"].verdict.startswith("DIFF")
    assert by["eval_loss"].ok and not by["eval_loss"].judged  # new in the rerun: shown, not judged
    assert by["train_time_s"].verdict == "ratio x2" and not by["train_time_s"].judged
    nan_rows = rp.compare({"eval_loss": math.nan}, {"eval_loss": math.nan}, gpu=False)
    assert nan_rows[0].ok


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return shared_store(tmp_path_factory)


def test_mlflow_lookup_takes_the_completed_original_of_a_reused_hash(store, tmp_path, monkeypatch, capsys):
    uri, hashes = store
    h = hashes[1]
    assert hashes[7] == h  # trial 7 reused trial 1's result
    original = rp.find_original(h[:5], uri, tmp_path)
    assert original.source.trial_number == 1 and not original.source.reused and original.source.study == STUDY
    assert original.config == trial_config("all_linear", 8, 42)
    expected = next(t[5] for t in TRIALS if t[0] == 1)
    assert original.metrics == expected and original.status == "COMPLETE" and original.device == "cpu:x86_64"
    monkeypatch.setattr("sweep.trial.run_trial", _fake_runner(expected))
    assert rp.main([h, "--tracking-uri", uri, "--sweeps-dir", str(tmp_path)]) == 0
    assert "reproducing " + h in capsys.readouterr().out


def test_mlflow_failed_trial_rerun_compares_status(store, tmp_path, monkeypatch, capsys):
    uri, hashes = store
    monkeypatch.setattr("sweep.trial.run_trial", _fake_runner(CPU_METRICS))
    assert rp.main([hashes[5], "--tracking-uri", uri, "--sweeps-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "status" in out and "FAILED" in out and "COMPLETE" in out
