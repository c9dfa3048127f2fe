"""The coordinator's logic on an in-process pool: dispatch, reuse, twins, recovery, retries, timeouts, baselines and
interruption, with a real sqlite Optuna storage and trials that return at once (milliseconds each). The same
paths through real worker processes are the slow tests of test_sweep.py and test_faults.py."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import optuna
import pytest

from sweep.config.compose import compose
from sweep.orchestration import records as R
from sweep.orchestration.coordinator import Coordinator
from sweep.orchestration.inprocess_pool import HANG, InProcessPool, LoseWorker
from sweep.orchestration.pool import WorkerStartupError
from sweep.orchestration.protocol import BaselineTask, TrialTask
from sweep.results import TrialResult, TrialStatus

C = optuna.trial.TrialState
SMOKE = ["+experiment=smoke", "tracking=none", "sweep.progress=plain"]


def score(task) -> TrialResult:
    """A trial that 'trains' at once: accuracy and ratio from its rank (a baseline: the base model's figures)."""
    if isinstance(task, BaselineTask):
        return TrialResult(TrialStatus.COMPLETE, {"eval_accuracy": 0.5, "merged_latency_p50_ms": 1.0})
    r = task.config["lora"]["r"]
    return TrialResult(TrialStatus.COMPLETE, {"eval_accuracy": 0.5 + r / 100, "trainable_ratio": r / 1000},
                       config_hash=task.config_hash, duration_s=0.01, meta={"device": "cpu"})


class Runner:
    """`score`, with the trials it ran counted and a behaviour per trial number (and attempt)."""

    def __init__(self, faults: dict | None = None):
        self.faults = dict(faults or {})  # trial number -> "lose" | "hang" | "fail" | "interrupt" | "fail_all"
        self.ran: list[int] = []

    def __call__(self, task):
        if isinstance(task, TrialTask):
            self.ran.append(task.trial_number)
            adapter = Path(task.output_dir) / "adapter"  # what a trained trial leaves in its folder
            adapter.mkdir(parents=True, exist_ok=True)
            (adapter / "adapter_model.safetensors").write_bytes(b"")
        fault = self.faults.pop(task.trial_number, None) if isinstance(task, TrialTask) else None
        if fault == "lose":
            raise LoseWorker("SIGKILL")
        if fault == "hang":
            return HANG
        if fault == "interrupt":
            raise KeyboardInterrupt
        if fault == "fail" or self.faults.get("all") == "fail":
            return TrialResult(TrialStatus.FAILED, {}, "OOM: injected", config_hash=getattr(task, "config_hash", ""))
        return score(task)


def sweep(tmp_path, *overrides, runner=None, workers=2, space=None, **pool_kw):
    run = compose([*SMOKE, f"sweep.output_dir={tmp_path / 'sweeps'}", *overrides])
    if space is not None:
        run.sweep.space = space
    pool = InProcessPool(runner or Runner(), workers, **pool_kw)
    summary = Coordinator(run, pool=pool).run()
    return summary, pool


def trials(tmp_path, name="smoke"):
    url = f"sqlite:///{tmp_path / 'sweeps' / name / 'study.db'}"
    return {t.number: t for t in optuna.load_study(study_name=name, storage=url).get_trials()}


ONE_CONFIG = ["sweep.n_trials=3", "sweep.sampler=random", "sweep.baseline=false", "sweep.group_by=[]"]


def one_config():
    from sweep.config.run_schema import ParamSpec

    return {"lora.r": ParamSpec(type="categorical", choices=[4])}


@pytest.mark.parametrize("tracked_later", [False, True])
def test_every_trial_of_the_grid_runs_once_and_is_recorded(tmp_path, tracked_later):
    runner = Runner()
    summary, pool = sweep(tmp_path, "sweep.workers=3", runner=runner, workers=3, tracked_later=tracked_later)
    ts = trials(tmp_path)
    assert summary.n_complete == 6 and sorted(ts) == list(range(6)) and sorted(runner.ran) == list(range(6))
    assert all(t.state == C.COMPLETE for t in ts.values())
    records = [R.TrialRecord.of(t) for t in ts.values()]
    assert len({r.config_hash for r in records}) == 6
    assert all(r.owner == f"{socket.gethostname()}:{os.getpid()}" and r.run.device == "cpu" for r in records)
    assert {r.arm for r in records} == {"lora.targets=qv", "lora.targets=all_linear"}
    assert all(r.metrics["eval_accuracy"] == t.values[0] for r, t in zip(records, ts.values()))
    baselines = [task for _, task in pool.submitted if isinstance(task, BaselineTask)]
    assert len(baselines) == 1 and isinstance(pool.submitted[0][1], TrialTask)  # the baseline follows the first trial
    study = optuna.load_study(study_name="smoke", storage=f"sqlite:///{tmp_path / 'sweeps/smoke/study.db'}")
    assert study.user_attrs[R.baseline_attr(baselines[0].baseline_key)]["status"] == "COMPLETE"
    assert study.user_attrs[R.EXPERIMENT] == "smoke"


@pytest.mark.parametrize("workers", [1, 2])
def test_a_completed_hash_is_reused_and_a_running_twin_waited_for(tmp_path, workers):
    """One config, three trials: trained once. With two workers trials 1 and 2 are asked while trial 0 trains (their
    running twin) and wait for its result."""
    runner = Runner()
    summary, _ = sweep(tmp_path, *ONE_CONFIG, runner=runner, workers=workers, space=one_config())
    ts = trials(tmp_path)
    assert summary.n_complete == 3 and runner.ran == [0]
    assert [R.TrialRecord.of(ts[n]).reused_from for n in range(3)] == [None, 0, 0]
    assert all(t.values == ts[0].values for t in ts.values())
    folder = tmp_path / "sweeps/smoke/trials" / f"0002-{ts[0].user_attrs[R.CONFIG_HASH]}"
    assert json.loads((folder / "result.json").read_text())["reused_from"] == 0
    assert (folder / "adapter" / "adapter_model.safetensors").is_file()  # a link to trial 0's adapter


def test_waiting_twins_of_a_failed_trial_train_the_config_once(tmp_path):
    runner = Runner({0: "fail"})
    summary, _ = sweep(tmp_path, *ONE_CONFIG, runner=runner, workers=2, space=one_config())
    ts = trials(tmp_path)
    assert ts[0].state == C.FAIL and ts[0].user_attrs[R.FAILURE_REASON] == "OOM: injected"
    assert runner.ran == [0, 1]  # not [0, 1, 2]: trial 2 waited for trial 1
    assert ts[1].state == C.COMPLETE and R.TrialRecord.of(ts[2]).reused_from == 1
    # n_trials counts finished trials: a fourth trial replaces the failed one, and reuses trial 1 too
    assert summary.n_complete == 3 and summary.n_failed == 1 and R.TrialRecord.of(ts[3]).reused_from == 1


def test_a_lost_worker_fails_its_trial_which_is_retried(tmp_path):
    runner = Runner({1: "lose"})
    summary, _ = sweep(tmp_path, "sweep.retry_failed=1", "sweep.baseline=false", runner=runner)
    ts = trials(tmp_path)
    assert ts[1].state == C.FAIL and "died (SIGKILL)" in ts[1].user_attrs[R.FAILURE_REASON]
    retry = [R.TrialRecord.of(t) for t in ts.values() if R.TrialRecord.of(t).retry_of == 1]
    assert len(retry) == 1 and retry[0].retry_count == 1 and retry[0].state == "COMPLETE"
    assert ts[retry[0].number].params == ts[1].params
    assert summary.n_complete == 6


def test_a_trial_past_its_time_limit_is_killed_and_failed(tmp_path):
    runner = Runner({0: "hang"})
    summary, pool = sweep(tmp_path, "sweep.trial_timeout_s=0.3", "sweep.retry_failed=0", "sweep.baseline=false",
                          runner=runner)
    ts = trials(tmp_path)
    assert [reason for _, reason in pool.killed] == ["timeout"]
    assert ts[0].state == C.FAIL and ts[0].user_attrs[R.FAILURE_REASON].startswith("timeout: trial exceeded")
    assert summary.n_complete == 6 and summary.n_failed == 1  # the grid point is proposed again


def test_a_runaway_failure_loop_stops_the_sweep(tmp_path):
    runner = Runner({"all": "fail"})
    summary, _ = sweep(tmp_path, "sweep.n_trials=3", "sweep.sampler=random", "sweep.retry_failed=0",
                       "sweep.baseline=false", "sweep.group_by=[]", runner=runner)
    # it stops asking at max(3, n_trials) failures; a trial already handed to the other worker still ends
    assert summary.n_complete == 0 and 3 <= summary.n_failed <= 4 and len(runner.ran) == summary.n_failed


def test_an_interrupted_sweep_keeps_what_finished_and_a_rerun_completes_it(tmp_path):
    runner = Runner({2: "interrupt"})
    summary, _ = sweep(tmp_path, "sweep.baseline=false", "sweep.retry_failed=1", runner=runner, workers=1)
    ts = trials(tmp_path)
    assert summary.interrupted and ts[0].state == ts[1].state == C.COMPLETE
    assert ts[2].state == C.FAIL and "interrupted (Ctrl-C)" in ts[2].user_attrs[R.FAILURE_REASON]
    assert not [t for t in ts.values() if t.state == C.RUNNING]
    summary, _ = sweep(tmp_path, "sweep.baseline=false", "sweep.retry_failed=1", runner=Runner(), workers=1)
    ts = trials(tmp_path)
    assert summary.n_complete == 6 and not summary.interrupted
    assert any(R.TrialRecord.of(t).retry_of == 2 and t.state == C.COMPLETE for t in ts.values())


def test_trials_of_a_dead_coordinator_are_salvaged_or_failed_and_retried(tmp_path):
    """A rerun settles what a killed coordinator on this host left RUNNING: a trial whose result reached its folder
    is told that result; one without is failed and retried."""
    from sweep.orchestration.recovery import trial_folder
    from sweep.orchestration.study import SweepStudy

    run = compose([*SMOKE, f"sweep.output_dir={tmp_path / 'sweeps'}", "sweep.baseline=false"])
    dead = f"{socket.gethostname()}:{_dead_pid()}"
    study = SweepStudy(run.sweep, "smoke", f"sqlite:///{tmp_path / 'sweeps/smoke/study.db'}")
    for number in (0, 1):
        trial = study.study.ask({"lora.targets": optuna.distributions.CategoricalDistribution(["qv", "all_linear"]),
                                 "lora.r": optuna.distributions.CategoricalDistribution([1, 2, 4])})
        study.claim(trial.number, dead)
        study.set_config_hash(trial.number, f"hash{number}")
    folder = trial_folder(tmp_path / "sweeps/smoke", 0, "hash0")
    folder.mkdir(parents=True)
    TrialResult(TrialStatus.COMPLETE, {"eval_accuracy": 0.9, "trainable_ratio": 0.001}).save(folder / "result.json")
    trial_folder(tmp_path / "sweeps/smoke", 1, "hash1").mkdir(parents=True)  # started, no result
    runner = Runner()
    sweep(tmp_path, "sweep.baseline=false", "sweep.retry_failed=1", "sweep.n_trials=4", "sweep.sampler=random",
          "sweep.group_by=[]", runner=runner)
    ts = trials(tmp_path)
    assert ts[0].state == C.COMPLETE and ts[0].values == [0.9, 0.001] and 0 not in runner.ran  # salvaged, not rerun
    assert ts[1].state == C.FAIL and "sweep process died" in ts[1].user_attrs[R.FAILURE_REASON]
    assert "sweep process died" in (trial_folder(tmp_path / "sweeps/smoke", 1, "hash1") / "INCOMPLETE").read_text()
    assert any(R.TrialRecord.of(t).retry_of == 1 for t in ts.values())
    assert not [t for t in ts.values() if t.state == C.RUNNING]


def test_a_worker_of_another_lorasweep_is_refused_naming_both_versions(tmp_path):
    import re

    from sweep.orchestration.protocol import version

    with pytest.raises(WorkerStartupError, match=re.escape(f"lorasweep 0.0.0+other, its coordinator {version()}")):
        sweep(tmp_path, runner=Runner(), version_of_workers="0.0.0+other")


def _dead_pid() -> int:
    """A pid that no process has (the highest pids are free on a test machine)."""
    for pid in range(4_000_000, 3_000_000, -1):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            continue
    raise RuntimeError("no free pid")


def test_messages_cross_a_pipe_as_they_are():
    """Both pools send protocol.py's objects as they are: each survives pickling unchanged."""
    import pickle

    from sweep.orchestration import protocol as P
    from sweep.tracking.base import TrialTrackingSpec

    where = P.Placement.here("0", "node", 4)
    result = TrialResult(TrialStatus.COMPLETE, {"eval_accuracy": 0.5, "x": float("inf")}, config_hash="abc")
    msgs = [P.TrialTask(3, {"lora": {"r": 4}}, "abc", "/t", {"k": "v"}, TrialTrackingSpec("sqlite:///x", "1", "p"), "oom"),
            P.BaselineTask("key", {"lora": {}}, {}), P.PruneReply(3, True), P.Stop(), P.Ready(1, where, "v"),
            P.Started(1, 3, "run"), P.Report(1, 3, 2, {"eval_accuracy": 0.5}), P.Tracked(1, 3), P.Lost(1, "gone"),
            P.Done(1, 3, result, 12.5, False, P.Shipped({"result.json": b"{}"}, {"run_id": "r"}), host_mb=3.0, baseline=False)]
    for m in msgs:
        assert pickle.loads(pickle.dumps(m)) == m
    assert P.BaselineTask("k", {}, {}).trial_number == -1 and P.BaselineTask("k", {}, {}).is_baseline
    assert where.as_dict() == {"host": socket.gethostname(), "pid": str(os.getpid()), "gpu": "0", "node_id": "node",
                               "threads": "4", "gpu_name": "", "gpu_uuid": "", "gpu_share": "1"}
    with pytest.raises(Exception):  # frozen: a task is not changed on its way
        msgs[0].trial_number = 4  # type: ignore[misc]
    assert Path(P.__file__).name == "protocol.py"


def test_a_worker_given_a_gpu_torch_cannot_use_fails_at_start_with_the_reason(tmp_path, monkeypatch):
    """device=auto used to train on the CPU when torch could not see the worker's GPU (a CPU wheel, an old driver):
    the worker now says why at start and the sweep stops before any trial."""
    import torch

    from sweep.orchestration import inprocess_pool, protocol
    from sweep.orchestration.worker import gpu_problem

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    problem = gpu_problem("0")
    assert "was given GPU 0" in problem and torch.__version__ in problem and "cannot use it" in problem
    assert gpu_problem(None) == "" and gpu_problem("") == ""

    def ready(self, w):  # a pool whose workers were each given a GPU
        self.queue.append(protocol.Ready(w.wid, protocol.Placement.here("0"), protocol.version(), gpu_problem("0")))

    monkeypatch.setattr(inprocess_pool.InProcessPool, "_say_ready", ready)
    runner = Runner()
    with pytest.raises(WorkerStartupError, match="was given GPU 0"):
        sweep(tmp_path, runner=runner)
    assert runner.ran == []


def test_incremental_counts_equal_a_full_read_at_every_step(tmp_path):
    """SweepStudy.counts tallies a finished trial once; at every step of a random history (asks, tells of every
    state, reuse, hashes, arms, a second reader of the same storage) it equals a walk over every trial."""
    import random

    from sweep.orchestration.study import STATES, SweepStudy

    def full(study, group):
        c = dict.fromkeys(STATES, 0)
        filled, completed, running = {}, {}, {}
        for t in study.study.get_trials(deepcopy=False):
            s, a = t.state.name, t.user_attrs
            c[s] += 1
            if s in ("COMPLETE", "PRUNED", "RUNNING") and a.get(group) is not None:
                filled[a[group]] = filled.get(a[group], 0) + 1
            h = a.get(R.CONFIG_HASH)
            if h is not None and s == "COMPLETE" and R.REUSED_FROM not in a:
                completed.setdefault(h, t.number)
            elif h is not None and s == "RUNNING":
                running.setdefault(h, []).append(t.number)
        return c, filled, completed, running

    run = compose(["tracking=none", "sweep.objectives=[eval_accuracy]"])
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study, other = SweepStudy(run.sweep, "s", url), SweepStudy(run.sweep, "s", url)
    rng = random.Random(0)
    open_trials: list[int] = []
    for step in range(150):
        writer = study if rng.random() < 0.7 else other  # another coordinator on the same storage
        if not open_trials or rng.random() < 0.5:
            n = writer.study.ask().number
            writer.set_config_hash(n, f"h{rng.randrange(8)}")
            writer.set_arm(n, f"arm{rng.randrange(2)}", n)
            open_trials.append(n)
        else:
            n = open_trials.pop(rng.randrange(len(open_trials)))
            kind = rng.choice(["complete", "reused", "pruned", "fail"])
            if kind == "reused":
                writer.set_reused(n, 0, {}, None)
            if kind in ("complete", "reused"):
                writer.study.tell(n, [rng.random()])
            else:
                writer.study.tell(n, state=optuna.trial.TrialState.PRUNED if kind == "pruned" else optuna.trial.TrialState.FAIL)
        for reader in (study, other):
            c = reader.counts(R.ARM)
            states, filled, completed, running = full(reader, R.ARM)
            assert {k: c[k] for k in STATES} == states, step
            assert c.filled == filled and c.running == running, step
            assert {h: t.number for h, t in c.completed.items()} == completed, step
            assert c["finished"] == states["COMPLETE"] + states["PRUNED"]


def test_recycler_ends_a_broken_cuda_worker_and_watches_host_memory_on_gpu():
    """A sticky CUDA error replaces the worker whatever its memory; an OOM does not; a baseline neither counts as a
    trial nor sets the reference; a GPU worker's host memory is watched beside its CUDA memory."""
    from sweep import faults
    from sweep.orchestration.pool import Recycler

    broken = faults.failure_reason(RuntimeError("CUDA error: device-side assert triggered"))
    oom = faults.failure_reason(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    illegal = faults.failure_reason(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert broken.startswith("CUDA broken:") and illegal.startswith("CUDA broken:") and oom.startswith("OOM:")
    assert faults.broke_cuda(broken) and not faults.broke_cuda(oom) and not faults.broke_cuda(None)
    r = Recycler(growth_mb=100.0, after=None)
    assert r.due(0, 5000.0, error=oom) is None
    assert "CUDA context is broken" in r.due(0, 5000.0, error=broken)
    r = Recycler(growth_mb=100.0, after=2)
    assert r.due(1, 9000.0, host_mb=2000.0, baseline=True) is None  # the baseline's reading is no reference
    assert r.due(1, 1000.0, host_mb=2000.0) is None and r.baseline[1] == 1000.0 and r.host_baseline[1] == 2000.0
    r = Recycler(growth_mb=100.0, after=None)
    assert r.due(3, 1000.0, host_mb=2000.0) is None
    assert r.due(3, 1050.0, host_mb=2050.0) is None
    assert r.due(3, 1050.0, host_mb=2150.0).startswith("host memory grew 150 MiB")
    assert r.due(4, 800.0) is None and r.due(4, 950.0).startswith("memory grew 150 MiB")  # CPU: host_mb not read
    r = Recycler(growth_mb=None, after=2)
    assert r.due(5, 1.0, baseline=True) is None and r.due(5, 1.0) is None and "ran 2 trials" in r.due(5, 1.0)


def test_a_shared_gpu_oom_is_retried_once_with_the_gpu_to_itself(tmp_path):
    """Two workers on one GPU: a trial that ran out of memory there may have been squeezed by its neighbour, so it is
    tried once more alone: handed out only when the neighbour is idle, and the neighbour gets nothing meanwhile. A
    second OOM alone is the config's (no further retry); an OOM on a GPU of its own is never retried this way."""
    shared = {"placement": {"gpu": "G", "gpu_share": "2"}, "device": "cuda"}

    class OomOnce(Runner):
        def __call__(self, task):
            if isinstance(task, TrialTask):
                self.ran.append(task.trial_number)
                if task.config["lora"]["r"] == 2 and not task.alone:
                    return TrialResult(TrialStatus.FAILED, {}, "OOM: CUDA out of memory (neighbour)",
                                       config_hash=task.config_hash, meta=shared)
            res = score(task)
            res.meta = {**res.meta, **shared}
            return res

    summary, pool = sweep(tmp_path, runner=OomOnce(), workers=2, gpus=["G", "G"])
    ts = trials(tmp_path)
    alone = [t for t in ts.values() if t.user_attrs.get(R.ALONE)]
    failed = [t for t in ts.values() if t.state == C.FAIL]
    assert len(failed) == 2 and len(alone) == 2  # r=2 under qv and all_linear: each failed once, retried alone
    assert all(t.state == C.COMPLETE and t.user_attrs[R.RETRY_OF] in {f.number for f in failed} for t in alone)
    assert summary.n_complete == 6 and summary.n_failed == 2
    current: dict[int, object] = {}  # each worker's task at the moment of each hand-over
    for (wid, task), (_, busy) in zip(pool.submitted, pool.busy_at_submit):
        if getattr(task, "alone", False):
            assert busy == set(), "an alone task started beside a busy neighbour"
        holders = [w for w in busy if getattr(current.get(w), "alone", False)]
        assert not holders, f"worker {wid} got a task while worker {holders} had the GPU to itself"
        current[wid] = task
    assert sum(getattr(t, "alone", False) for _, t in pool.submitted) == 2


def test_an_oom_on_a_gpu_of_its_own_is_not_retried_alone(tmp_path):
    runner = Runner({1: "fail"})
    summary, pool = sweep(tmp_path, runner=runner, workers=2)
    ts = trials(tmp_path)
    assert not any(t.user_attrs.get(R.ALONE) for t in ts.values()) and summary.n_failed == 1


def test_an_alone_retry_waits_for_its_busy_neighbour(tmp_path, monkeypatch):
    """The retry comes up while the neighbour still runs a trial (here: one that hangs until the trial timeout
    kills it): it is held back, first in line, and starts only once the neighbour is idle."""
    from sweep.orchestration.dispatch import Dispatcher

    held = []
    real = Dispatcher.hold_back
    monkeypatch.setattr(Dispatcher, "hold_back", lambda self, p: (held.append(p.number), real(self, p)))
    shared = {"placement": {"gpu": "G", "gpu_share": "2"}, "device": "cuda"}

    class Mixed(Runner):
        def __call__(self, task):
            if isinstance(task, TrialTask):
                self.ran.append(task.trial_number)
                lora = task.config["lora"]
                if lora["targets"] == "all_linear" and lora["r"] == 4 and not task.alone:
                    return HANG  # the neighbour, busy until the timeout
                if lora["r"] == 2 and not task.alone:
                    return TrialResult(TrialStatus.FAILED, {}, "OOM: CUDA out of memory", config_hash=task.config_hash,
                                       meta=shared)
            res = score(task)
            res.meta = {**res.meta, **shared}
            return res

    summary, pool = sweep(tmp_path, "sweep.trial_timeout_s=1", runner=Mixed(), workers=2, gpus=["G", "G"])
    alone = [(busy, t) for (w, t), (_, busy) in zip(pool.submitted, pool.busy_at_submit) if getattr(t, "alone", False)]
    assert alone and all(busy == set() for busy, _ in alone)
    assert held and pool.killed  # the retry came up while the neighbour hung, and waited until it was killed
    assert all(n in {t.trial_number for _, t in alone} for n in held)
