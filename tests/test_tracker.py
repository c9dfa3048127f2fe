"""A trial's MLflow run is opened off the trial's critical path: nothing logged before it exists is lost, the
coordinator hears `started` before `done`, and a run that cannot be opened fails no trial."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweep.tracking import mlflow_tracker as mt


@pytest.fixture
def store(in_tmp):
    uri = f"sqlite:///{Path('.mlflow/mlflow.db').resolve()}"
    exp = mt.ensure_experiment(uri, "t", str(Path("mlruns").resolve()))
    return uri, exp


def test_metrics_logged_before_the_run_exists_reach_it(store, monkeypatch):
    uri, exp = store
    gate = threading.Event()
    client = mt.client

    def slow_client(*a, **kw):  # a worker's first MLflow client is slow to make (imports, store set-up)
        gate.wait(10)
        return client(*a, **kw)

    monkeypatch.setattr(mt, "client", slow_client)
    opened: list[str] = []
    t0 = time.perf_counter()
    tr = mt.MlflowTrialTracker(uri, exp, "parent", "trial-0000-x", {"k": "v"}, params={"lora": {"r": 8}},
                               on_open=opened.append)
    assert time.perf_counter() - t0 < 1.0 and tr.run_id is None  # the trial is not kept waiting
    tr.log_metrics({"train_loss": 1.5}, step=1)
    monkeypatch.setattr(mt, "FLUSH_EVERY_S", 0.0)  # a periodic flush comes due: it must not wait for the run
    tr.log_metrics({"train_loss": 1.25}, step=2)
    tr.set_tags({"status": "COMPLETE"})
    errors: list[BaseException] = []

    def log_meta() -> None:  # e.g. a fast baseline's meta.json, logged while the run is still being opened
        try:
            tr.log_dict({"k": 1}, "meta.json")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    writer = threading.Thread(target=log_meta)
    writer.start()
    gate.set()
    writer.join(10)
    assert errors == []
    tr.finish("FINISHED")
    assert opened == [tr.run_id]
    run = MlflowClient(uri).get_run(tr.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"lora.r": "8"} and run.data.tags["status"] == "COMPLETE"
    history = MlflowClient(uri).get_metric_history(tr.run_id, "train_loss")
    assert sorted((m.step, m.value) for m in history) == [(1, 1.5), (2, 1.25)]
    assert [f.path for f in MlflowClient(uri).list_artifacts(tr.run_id)] == ["meta.json"]


def test_a_run_that_cannot_be_opened_fails_no_trial_call(store):
    uri, _ = store
    opened: list[str] = []
    tr = mt.MlflowTrialTracker(uri, "424242", "parent", "trial-0000-x", {}, on_open=opened.append)  # no experiment
    assert tr.opened() is None and opened == []
    tr.log_metrics({"eval_accuracy": 0.5})  # the trial's own calls never raise
    tr.set_tags({"status": "COMPLETE"})
    with pytest.raises(Exception, match="424242|experiment"):  # the closing does: the worker records it
        tr.finish("FINISHED")


def test_worker_says_started_with_the_run_before_done(store, compose_trial, in_tmp):
    from sweep.orchestration.protocol import Placement, Started, TrialTask
    from sweep.orchestration.worker import execute
    from sweep.tracking.base import TrialTrackingSpec

    uri, exp = store
    parent = MlflowClient(uri).create_run(exp).info.run_id
    cfg = compose_trial("train.max_steps=2")
    task = TrialTask(0, cfg.to_dict(), "abc", "trial", {}, TrialTrackingSpec(uri, exp, parent))
    sent: list = []
    closing: list = []
    result = execute(task, wid=3, send=sent.append, ask_prune=lambda *a: False, where=Placement.here(None),
                     finish_later=closing.append)
    assert [type(m) for m in sent] == [Started] and sent[0].run_id and sent[0].wid == 3  # before the caller's Done
    assert result.status.value == "COMPLETE" and result.meta["bookkeeping_s"] < 5
    closing[0]()
    run = MlflowClient(uri).get_run(sent[0].run_id)
    assert run.info.status == "FINISHED" and run.data.params["lora.r"] == str(cfg.lora.r)
    assert run.data.metrics["eval_accuracy"] == result.metrics["eval_accuracy"]
