"""The names lorasweep stores in Optuna studies: pinned (existing study.db files must resume), written and read back
through the typed writers and readers."""

from __future__ import annotations

import math
from pathlib import Path

import optuna

from sweep.orchestration import records as R


def test_stored_names_never_change():
    """A study written by an earlier lorasweep is resumed, shared and reported by reading these exact strings: a
    rename would orphan every existing study. Add names; never change one."""
    assert R.TRIAL_ATTRS == ("config_hash", "owner", "arm", "arm_trial", "main_trial", "metrics", "run", "failure_reason",
                             "mlflow_run_id", "reused_from", "retry_count", "retry_of", "infeasible", "alone")
    assert R.STUDY_ATTRS == ("objectives", "experiment", "baseline:")
    assert R.baseline_attr("k1") == "baseline:k1"


def test_no_module_spells_a_stored_name_itself():
    """One owner: outside records.py no source file writes these names as string literals next to a user-attribute
    call (the report reads MLflow tags, whose names live in tracking/tags.py)."""
    src = Path(R.__file__).resolve().parents[1]
    offenders = []
    for path in src.rglob("*.py"):
        if path.name == "records.py":
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if "attr" not in line:  # user_attrs, set_user_attr, set_attrs, enqueue_trial(user_attrs=...)
                continue
            for name in (*R.TRIAL_ATTRS, *R.STUDY_ATTRS):
                if f'"{name}"' in line or f"'{name}'" in line:
                    offenders.append(f"{path.relative_to(src)}:{i}: {line.strip()}")
    assert not offenders, offenders


def test_typed_writers_and_reader_round_trip(tmp_path):
    from sweep.config.compose import compose
    from sweep.orchestration.study import SweepStudy

    run = compose(["tracking=none"])
    study = SweepStudy(run.sweep, "s", f"sqlite:///{tmp_path / 'study.db'}")
    n = study.study.ask().number
    study.claim(n, "host:1")
    study.set_config_hash(n, "abc123")
    study.set_arm(n, "lora.targets=qv", 4)
    study.set_run_id(n, "run-1")
    study.set_outcome(n, {"eval_accuracy": 0.5, "latency_p50_ms": None}, R.RunInfo("cpu", 2.5, 0.1), "OOM: x")
    r = study.record(n)
    assert (r.owner, r.config_hash, r.arm, r.arm_trial, r.mlflow_run_id, r.failure_reason) == (
        "host:1", "abc123", "lora.targets=qv", 4, "run-1", "OOM: x")
    assert r.metrics == {"eval_accuracy": 0.5, "latency_p50_ms": None} and r.run == R.RunInfo("cpu", 2.5, 0.1)
    assert r.trained and r.retry_count == 0 and r.state == "RUNNING"
    # the exact stored form, as an earlier lorasweep wrote it
    assert study.trial(n).user_attrs == {"owner": "host:1", "config_hash": "abc123", "arm": "lora.targets=qv",
                                         "arm_trial": 4, "mlflow_run_id": "run-1", "failure_reason": "OOM: x",
                                         "metrics": {"eval_accuracy": 0.5, "latency_p50_ms": None},
                                         "run": {"device": "cpu", "duration_s": 2.5, "bookkeeping_s": 0.1}}
    study.study.tell(n, state=optuna.trial.TrialState.FAIL)
    study.enqueue_retry({}, 1, n)
    m = study.study.ask().number
    study.set_reused(m, n, {"eval_accuracy": 0.5}, None)
    r = study.record(m)
    assert (r.retry_count, r.retry_of, r.reused_from, r.trained) == (1, n, n, False)
    study.set_baseline("key", {"status": "COMPLETE"})
    study.set_experiment("qv_vs_all")
    assert study.baseline("key") == {"status": "COMPLETE"} and study.study.user_attrs["baseline:key"] == {"status": "COMPLETE"}
    assert study.study.user_attrs["experiment"] == "qv_vs_all" and study.study.user_attrs["objectives"] == list(run.sweep.objectives)
    assert math.isclose(R.RunInfo.of({"device": "cpu", "duration_s": 1, "recovered": "x"}).duration_s, 1.0)
