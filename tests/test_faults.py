"""The ugly paths: random worker and coordinator kills, a full disk. After a crash and a rerun: nothing lost,
nothing left RUNNING in Optuna or MLflow, no process of the sweep alive, no completed config trained twice."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import psutil
import pytest

from sweep.config.compose import compose
from sweep.orchestration.coordinator import Coordinator

SEED = 20261123
N_TRIALS = 8
# the smoke experiment with a space large enough that random trials rarely repeat a config
CHAOS = """# @package _global_
defaults:
  - smoke
  - _self_
train:
  max_steps: 30
  eval_every: 0
sweep:
  workers: 3
  n_trials: %d
  sampler: random
  sampler_seed: 3
  space:
    lora.targets: {type: categorical, choices: [qv, all_linear]}
    lora.r: {type: int, low: 1, high: 16, choices: null}  # merged over smoke's categorical r
    lora.dropout: {type: categorical, choices: [0.0, 0.05, 0.1]}
""" % N_TRIALS
CMD = [sys.executable, "-m", "sweep", "--config-dir", "my_conf", "+experiment=chaos", "sweep.progress=plain"]


def _study(name: str = "smoke"):  # the chaos experiment keeps smoke's study name
    return optuna.load_study(study_name=name, storage=f"sqlite:///{Path('sweeps', name, 'study.db').resolve()}")


def _states():
    try:
        return [t.state for t in _study().get_trials()]
    except Exception:  # the study does not exist yet, or the database is being created
        return []


def _mlflow_children(study: str = "smoke"):
    from mlflow.tracking import MlflowClient

    c = MlflowClient(f"sqlite:///{Path('.mlflow/mlflow.db').resolve()}")
    runs = c.search_runs([c.get_experiment_by_name(study).experiment_id], max_results=1000)
    return [r for r in runs if r.data.tags.get("lorasweep.role") == "trial"]


def _workers(coordinator: psutil.Process) -> list[psutil.Process]:
    try:
        return [p for p in coordinator.children(recursive=True) if "spawn_main" in " ".join(p.cmdline())]
    except psutil.NoSuchProcess:
        return []


def _wait(predicate, timeout_s: float, what: str):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_random_kills_of_workers_and_coordinator_then_rerun_lose_nothing(in_tmp):
    rng = random.Random(SEED)
    (in_tmp / "my_conf" / "experiment").mkdir(parents=True)
    (in_tmp / "my_conf" / "experiment" / "chaos.yaml").write_text(CHAOS)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "LORASWEEP_FAULTS": ""}
    proc = subprocess.Popen(CMD, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    coordinator = psutil.Process(proc.pid)
    seen: set[int] = {proc.pid}
    try:
        for _ in range(2):  # SIGKILL a random worker in the middle of a trial, twice
            _wait(lambda: optuna.trial.TrialState.RUNNING in _states(), 120, "a running trial")
            time.sleep(rng.uniform(0.5, 3.0))
            workers = _wait(lambda: _workers(coordinator), 30, "workers")
            seen |= {w.pid for w in workers}
            victim = rng.choice(workers)
            victim.send_signal(signal.SIGKILL)
        _wait(lambda: _states().count(optuna.trial.TrialState.COMPLETE) >= 2 and optuna.trial.TrialState.RUNNING in _states(),
              180, "two complete trials and a running one")
        time.sleep(rng.uniform(0.0, 2.0))
        workers = _workers(coordinator)
        seen |= {w.pid for w in workers} | {p.pid for p in coordinator.children(recursive=True)}
        coordinator.send_signal(signal.SIGKILL)  # the machine's coordinator dies mid-trial
        killed_at = time.time()
        proc.wait(30)
        gone = psutil.wait_procs(workers, timeout=2.0)[1]
        assert not gone, f"workers outlived their coordinator by 2 s: {[p.pid for p in gone]}"
        assert time.time() - killed_at < 5
    finally:
        if proc.poll() is None:
            proc.kill()
    first_out = proc.stdout.read()
    complete_before = {t.number: t.user_attrs["config_hash"] for t in _study().get_trials()
                       if t.state == optuna.trial.TrialState.COMPLETE}

    rerun = subprocess.Popen(CMD, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    rerun_proc = psutil.Process(rerun.pid)
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, first_out + out
    seen.add(rerun_proc.pid)

    trials = _study().get_trials()
    states = [t.state for t in trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == N_TRIALS, (states, out)
    assert optuna.trial.TrialState.RUNNING not in states
    complete = {t.number: t for t in trials if t.state == optuna.trial.TrialState.COMPLETE}
    assert set(complete_before) <= set(complete)  # nothing that finished was lost
    runs = {int(r.data.tags["lorasweep.trial_number"]): r for r in _mlflow_children()}
    assert not [n for n, r in runs.items() if r.info.status == "RUNNING"], "an MLflow run was left RUNNING"
    for number, t in complete.items():
        folder = Path("sweeps/smoke/trials") / f"{number:04d}-{t.user_attrs['config_hash']}"
        result = json.loads((folder / "result.json").read_text())
        assert result["status"] == "COMPLETE" and (folder / "adapter" / "adapter_model.safetensors").is_file(), folder
        assert runs[number].info.status == "FINISHED" and runs[number].data.tags["lorasweep.status"] == "COMPLETE"
        assert "eval_accuracy" in runs[number].data.metrics
    for t in trials:
        if t.state == optuna.trial.TrialState.FAIL:
            assert runs[t.number].info.status == "FAILED" if t.number in runs else True
    trained: dict[str, int] = {}
    for folder in Path("sweeps/smoke/trials").iterdir():
        r = json.loads((folder / "result.json").read_text()) if (folder / "result.json").is_file() else {}
        if r.get("status") == "COMPLETE" and r.get("reused_from") is None:
            trained[r["config_hash"]] = trained.get(r["config_hash"], 0) + 1
    assert all(n == 1 for n in trained.values()), trained  # no completed config was trained twice
    alive = [pid for pid in seen if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"processes of the sweep still alive: {alive}"


@pytest.mark.slow  # fast: test_a_full_disk_is_the_trials_failed_status below (the worker's own execute)
def test_full_disk_fails_the_trial_not_the_sweep(in_tmp, monkeypatch):
    monkeypatch.setenv("LORASWEEP_FAULTS", "1:disk_full")
    run = compose(["+experiment=smoke", "sweep.n_trials=3", "sweep.workers=1", "sweep.retry_failed=0", "sweep.progress=plain"])
    summary = Coordinator(run).run()
    trials = {t.number: t for t in _study().get_trials()}
    assert trials[1].state == optuna.trial.TrialState.FAIL
    assert trials[1].user_attrs["failure_reason"].startswith("disk full: [Errno 28] No space left on device")
    assert summary.n_complete == 3 and not summary.interrupted
    runs = {int(r.data.tags["lorasweep.trial_number"]): r for r in _mlflow_children()}
    assert runs[1].info.status == "FAILED" and runs[1].data.tags["lorasweep.failure_reason"].startswith("disk full")


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


@pytest.mark.slow
def test_a_really_full_disk_fails_trials_and_a_rerun_after_freeing_it_completes(in_tmp):
    out = in_tmp / "full"
    if not _mount_tmpfs(out, "1m"):
        pytest.skip("cannot mount a tmpfs here (needs root): the injected-fault test covers the logic")
    try:
        filler = out / "filler"
        with open(filler, "wb", buffering=0) as fh:  # fill the disk to the last byte
            try:
                while True:
                    fh.write(b"\0" * 4096)
            except OSError:
                pass
        storage = f"sqlite:///{in_tmp / 'study.db'}"
        cmd = [sys.executable, "-m", "sweep", "+experiment=smoke", "sweep.n_trials=2", "sweep.workers=1",
               f"sweep.output_dir={out}", f"sweep.storage={storage}", "sweep.progress=plain"]
        first = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert first.returncode == 1, first.stdout + first.stderr  # no trial could run: non-zero, but no traceback
        assert "Traceback" not in first.stdout + first.stderr
        study = optuna.load_study(study_name="smoke", storage=storage)
        failed = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.FAIL]
        assert failed and all("No space left on device" in t.user_attrs["failure_reason"] for t in failed)
        filler.unlink()
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert second.returncode == 0, second.stdout + second.stderr
        states = [t.state for t in optuna.load_study(study_name="smoke", storage=storage).get_trials()]
        assert states.count(optuna.trial.TrialState.COMPLETE) == 2 and optuna.trial.TrialState.RUNNING not in states
    finally:
        subprocess.run(["umount", "-l", str(out)], capture_output=True)


def test_a_full_disk_is_the_trials_failed_status(in_tmp, compose_trial):
    """A worker whose disk fills while it saves the adapter returns the trial FAILED with the reason (the sweep goes
    on: test_dispatch.py covers what the coordinator does with a FAILED result)."""
    from sweep.config.hashing import config_hash
    from sweep.orchestration.protocol import Placement, TrialTask
    from sweep.orchestration.worker import execute

    cfg = compose_trial("train.max_steps=2", "train.eval_every=0", "train.latency_min_iters=1", "train.latency_max_iters=1",
                        "train.latency_warmup=0")
    task = TrialTask(1, cfg.to_dict(), config_hash(cfg), str(in_tmp / "trial"), {}, None, fault="disk_full")
    result = execute(task, wid=0, send=lambda ev: None, ask_prune=lambda *a: False, where=Placement.here(None))
    assert result.status.value == "FAILED"
    assert result.error.startswith("disk full: [Errno 28] No space left on device")
