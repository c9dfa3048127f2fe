"""The sweep loop: ask Optuna for a trial the moment a worker is free, tell it the result.

One coordinator per machine owns its local workers (one per GPU, or CPU workers
sharing the cores) and talks to the shared Optuna storage; coordinators on other
machines join the same study through the same storage URL. No batch barrier.

Fault handling: a failed trial is a status; a worker that dies (SIGKILL, OOM
killer) or overruns the timeout is replaced, its trial told FAIL, its MLflow run
closed FAILED and, if configured, its parameters enqueued again; trials left
RUNNING by a dead coordinator are failed on the next start (same host: the pid is
gone; other hosts: the heartbeat is stale).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from sweep.config.compose import RunConfig, trial_dict
from sweep.config.errors import ConfigError
from sweep.config.hashing import config_hash
from sweep.config.schema import TrialConfig
from sweep.orchestration import space as sp
from sweep.orchestration.progress import Progress
from sweep.orchestration.study import make_storage, open_study, storage_url
from sweep.orchestration.worker import worker_main
from sweep.results import TrialResult, TrialStatus

OWNER_ATTR = "owner"  # host:pid of the coordinator running a trial
FAULTS_ENV = "LORASWEEP_FAULTS"  # test hook: "3:oom,5:nan,2:kill" (trial number: fault)


@dataclass
class Worker:
    wid: int
    gpu: str | None
    threads: int
    proc: Any = None
    conn: Any = None
    ready: bool = False
    task: dict | None = None  # the running task
    trial: Any = None  # optuna.Trial of the running task
    started: float = 0.0
    run_id: str | None = None
    deaths: int = 0  # consecutive deaths before reaching ready


@dataclass
class SweepSummary:
    study_name: str
    storage: str
    n_complete: int
    n_pruned: int
    n_failed: int
    wall_s: float
    trial_compute_s: float
    best: list[dict] = field(default_factory=list)
    interrupted: bool = False
    startup_s: float = 0.0  # until every worker had imported torch/peft and said ready
    trials_run: int = 0  # trials trained by this run (reused and untrained failures excluded)


def plan_workers(workers: Any, workers_per_gpu: int, threads_per_worker: int) -> list[tuple[str | None, int]]:
    """(gpu id or None, torch threads) per worker."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        import torch

        n_gpu = torch.cuda.device_count()
    except ImportError:
        n_gpu = 0
    gpus = (visible.split(",") if visible else [str(i) for i in range(n_gpu)])[:n_gpu] if n_gpu else []
    cores = os.cpu_count() or 1
    if gpus:
        slots = [g for g in gpus for _ in range(workers_per_gpu)]
        if workers != "auto":
            slots = [slots[i % len(slots)] for i in range(int(workers))]
        threads = threads_per_worker or max(1, cores // len(slots))
        return [(g, threads) for g in slots]
    n = max(1, cores // 2) if workers == "auto" else int(workers)
    threads = threads_per_worker or max(1, cores // n)
    return [(None, threads)] * n


def _faults() -> dict[int, str]:
    spec = os.environ.get(FAULTS_ENV, "")
    out = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        num, _, kind = part.partition(":")
        out[int(num)] = kind
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Coordinator:
    def __init__(self, run: RunConfig, tracker_factory=None):
        self.rc = run
        self.cfg = run.sweep
        self.study_name = run.study_name
        self.out_dir = Path(self.cfg.output_dir) / self.study_name
        self.url = storage_url(self.cfg.storage, self.cfg.output_dir, self.study_name)
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.base_dict = {g: run.raw[g] for g in ("model", "data", "lora", "quant", "train")}
        self.group_params = sp.group_params(self.cfg.space)
        self.faults = _faults()
        self.conf: Path | None = None  # this run's snapshot of conf/, made in open()
        self.workers: list[Worker] = []
        self.ml: dict | None = None
        self.session_failures = 0
        self.stopping = False
        self.interrupted = False
        self.compute_s = 0.0
        self.trials_run = 0
        self.t_start = time.time()
        self.t_ready: float | None = None
        self.progress: Progress | None = None

    # ---------------------------------------------------------------- set-up
    def _on_stale(self, study, frozen) -> None:
        """Optuna failed a trial whose heartbeat went stale: close its MLflow run, retry if configured."""
        self._close_orphan(frozen, "heartbeat lost: its worker or machine died")
        self._maybe_retry(study, frozen)

    def _close_orphan(self, frozen, reason: str) -> None:
        run_id = frozen.user_attrs.get("mlflow_run_id")
        if self.ml and run_id:
            from sweep.tracking.mlflow_tracker import finish_run

            try:
                finish_run(self.ml["tracking_uri"], run_id, "FAILED",
                           {"lorasweep.status": "FAILED", "lorasweep.failure_reason": reason})
            except Exception:
                pass

    def _maybe_retry(self, study, frozen) -> None:
        retries = int(frozen.user_attrs.get("retry_count", 0))
        if retries < self.cfg.retry_failed and frozen.params:
            study.enqueue_trial(frozen.params, user_attrs={"retry_count": retries + 1, "retry_of": frozen.number},
                                skip_if_exists=False)

    def _snapshot_conf(self) -> Path:
        """Copy conf/ for this run: every trial composes from the files as they were when the run started
        (editing conf/ mid-sweep cannot change later trials). One folder per coordinator, so several
        coordinators on one host do not trip over each other; removed when the run ends."""
        import shutil

        from sweep.config.compose import conf_dir

        dst = self.out_dir / f"conf-{self.owner.replace(':', '-')}"
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(conf_dir(), dst)
        return dst.resolve()

    def open(self) -> None:
        import optuna

        self.conf = self._snapshot_conf()

        self.storage = make_storage(self.url, heartbeat_interval=self.cfg.heartbeat_interval_s,
                                    grace_period=self.cfg.grace_period_s, failed_trial_callback=self._on_stale)
        self.study = open_study(self.cfg, self.study_name, self.storage)
        self.study.set_user_attr("experiment", self.rc.name)
        if self.rc.tracking.backend == "mlflow":
            from sweep.tracking import mlflow_tracker as mt

            uri = mt.absolute_uri(self.rc.tracking.tracking_uri)
            tags = {"lorasweep.experiment": self.rc.name, "lorasweep.objectives": ",".join(self.cfg.objectives),
                    "lorasweep.group_by": ",".join(self.cfg.group_by), "lorasweep.storage": self.url,
                    **{f"tag.{k}": str(v) for k, v in self.rc.tags.items()}}
            params = {"sweep.n_trials": self.cfg.n_trials, "sweep.sampler": self.cfg.sampler, "sweep.pruner": self.cfg.pruner,
                      "sweep.objectives": ",".join(self.cfg.objectives), "sweep.space": ",".join(self.cfg.space)}
            with mt.init_lock(uri):
                exp_id = mt.ensure_experiment(uri, self.study_name, self.rc.tracking.artifact_location)
                parent = mt.parent_run(uri, exp_id, self.study_name, tags, params)
            self.ml = {"tracking_uri": uri, "experiment_id": exp_id, "parent_run_id": parent,
                       "log_adapter": self.rc.tracking.log_adapter}
        self._recover(optuna)

    def _recover(self, optuna) -> None:
        """Fail trials left RUNNING by a dead coordinator on this host, then stale ones anywhere."""
        host = socket.gethostname()
        for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            owner = str(t.user_attrs.get(OWNER_ATTR, ""))
            o_host, _, o_pid = owner.partition(":")
            if o_host == host and o_pid.isdigit() and not _pid_alive(int(o_pid)):
                reason = "its sweep process died (killed) before the trial finished"
                self.study._storage.set_trial_user_attr(t._trial_id, "failure_reason", reason)
                self.study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
                self._close_orphan(t, reason)
                self._maybe_retry(self.study, t)
        optuna.storages.fail_stale_trials(self.study)

    # ---------------------------------------------------------------- workers
    def _spawn(self, w: Worker) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        w.proc = ctx.Process(target=worker_main, args=(child, w.wid, w.gpu, w.threads), daemon=True, name=f"lorasweep-worker-{w.wid}")
        w.proc.start()
        child.close()
        w.conn, w.ready, w.task, w.trial, w.run_id = parent, False, None, None, None

    def start_workers(self) -> None:
        for i, (gpu, threads) in enumerate(plan_workers(self.cfg.workers, self.cfg.workers_per_gpu, self.cfg.threads_per_worker)):
            w = Worker(i, gpu, threads)
            self._spawn(w)
            self.workers.append(w)

    def stop_workers(self, force: bool = False) -> None:
        for w in self.workers:
            if w.proc is None or not w.proc.is_alive():
                continue
            try:
                if force:
                    w.proc.terminate()
                else:
                    w.conn.send({"type": "stop"})
            except (OSError, BrokenPipeError):
                pass
        deadline = time.time() + 15
        for w in self.workers:
            if w.proc is not None:
                w.proc.join(max(0.1, deadline - time.time()))
                if w.proc.is_alive():
                    w.proc.kill()
                    w.proc.join(5)

    # ---------------------------------------------------------------- counting
    def _counts(self) -> dict[str, int]:
        c = {s: 0 for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")}
        for t in self.study.get_trials(deepcopy=False):
            if t.state.name in c:
                c[t.state.name] += 1
        c["finished"] = c["COMPLETE"] + c["PRUNED"]
        return c

    def _completed_by_hash(self) -> dict[str, Any]:
        import optuna

        out = {}
        for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            h = t.user_attrs.get("config_hash")
            if h and h not in out and "reused_from" not in t.user_attrs:
                out[h] = t
        return out

    # ---------------------------------------------------------------- dispatch
    def _want_more(self) -> bool:
        """Another trial is needed: finished + running (on every machine) is short of n_trials."""
        c = self._counts()
        return c["finished"] + c["RUNNING"] < self.cfg.n_trials

    def _next_trial(self):
        """Ask for a trial and build its config; returns (trial, task) or None when it was handled here."""
        trial = self.study.ask()
        self.storage.record_heartbeat(trial._trial_id)
        trial.set_user_attr(OWNER_ATTR, self.owner)
        try:
            params = sp.suggest(trial, self.cfg.space, self.base_dict)
            tdict = trial_dict(self.rc.overrides, params, self.group_params, conf=self.conf)
            cfg = TrialConfig.from_dict(tdict)
        except ConfigError as exc:
            self._fail_untrained(trial, "config: " + "; ".join(exc.problems))
            return None
        h = config_hash(cfg)
        trial.set_user_attr("config_hash", h)
        trial.set_user_attr("sampled_params", {k: (v if not isinstance(v, (list, dict)) else str(v)) for k, v in params.items()})
        if self.cfg.reuse_completed:
            prior = self._completed_by_hash().get(h)
            if prior is not None:
                self._reuse(trial, prior, h, tdict)
                return None
        n = trial.number
        task = {"type": "run", "trial_number": n, "config": tdict, "config_hash": h,
                "output_dir": str((self.out_dir / "trials" / f"{n:04d}-{h}").resolve()),
                "max_trainable_params": self.cfg.max_trainable_params, "fault": self.faults.get(n)}
        return trial, task

    def _trial_tags(self, trial, h: str, cfg_dict: dict) -> dict[str, str]:
        from sweep.provenance import git_state

        return {"lorasweep.study": self.study_name, "lorasweep.trial_number": str(trial.number),
                "lorasweep.config_hash": h, "lorasweep.git_sha": str(git_state()["git_sha"]),
                "lorasweep.seed": str(cfg_dict["train"]["seed"]), "lorasweep.status": "RUNNING",
                "lorasweep.experiment": self.rc.name}

    def _reuse(self, trial, prior, h: str, tdict: dict) -> None:
        """A config hash that already completed: copy its result instead of retraining."""
        prior_metrics = dict(prior.user_attrs.get("metrics") or {})
        trial.set_user_attr("metrics", prior_metrics)
        trial.set_user_attr("reused_from", prior.number)
        if self.ml:
            from sweep.tracking.mlflow_tracker import MlflowTrialTracker

            tags = {**self._trial_tags(trial, h, tdict), "lorasweep.reused_from": str(prior.number),
                    "lorasweep.status": "COMPLETE", "lorasweep.device": str(prior.user_attrs.get("device", ""))}
            tr = MlflowTrialTracker(self.ml["tracking_uri"], self.ml["experiment_id"], self.ml["parent_run_id"],
                                    run_name=f"trial-{trial.number:04d}-{h}-reused", tags=tags)
            tr.log_params(tdict)
            tr.log_metrics({k: v for k, v in prior_metrics.items() if v is not None})
            tr.finish("FINISHED")
            trial.set_user_attr("mlflow_run_id", tr.run_id)
        self.study.tell(trial, prior.values)
        self.progress.event(trial.number, "reused", f"config {h} already completed as trial {prior.number}")

    def _fail_untrained(self, trial, reason: str) -> None:
        trial.set_user_attr("failure_reason", reason)
        self.study.tell(trial, state=__import__("optuna").trial.TrialState.FAIL)
        self.session_failures += 1
        self.progress.event(trial.number, "failed", reason)

    def _dispatch(self, w: Worker) -> bool:
        got = self._next_trial()
        if got is None:
            return False
        trial, task = got
        if self.ml:
            task["mlflow"] = {**self.ml, "tags": self._trial_tags(trial, task["config_hash"], task["config"])}
        task["config"]["train"]["threads"] = w.threads  # recorded so a rerun uses the same CPU thread count
        w.task, w.trial, w.started, w.run_id = task, trial, time.time(), None
        w.conn.send(task)
        self.progress.event(trial.number, "started", f"worker {w.wid} hash {task['config_hash']}")
        return True

    # ---------------------------------------------------------------- results
    def _objective_values(self, result: TrialResult) -> list[float] | None:
        import math

        vals = []
        for name in self.cfg.objectives:
            v = result.metrics.get(name)
            if v is None or not math.isfinite(float(v)):
                return None
            vals.append(float(v))
        return vals

    def _finish(self, w: Worker, result: TrialResult) -> None:
        import optuna

        trial = w.trial
        self.compute_s += result.duration_s
        self.trials_run += 1
        trial.set_user_attr("metrics", {k: (v if v == v else None) for k, v in result.metrics.items()})  # one write
        trial.set_user_attr("device", str(result.meta.get("device", "")))
        trial.set_user_attr("duration_s", result.duration_s)
        if result.error:
            trial.set_user_attr("failure_reason", result.error)
        if result.status is TrialStatus.COMPLETE:
            values = self._objective_values(result)
            if values is None:
                trial.set_user_attr("failure_reason", f"objective metric missing or not finite: {self.cfg.objectives}")
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
                self.session_failures += 1
            else:
                self.study.tell(trial, values)
        elif result.status is TrialStatus.PRUNED:
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            self.session_failures += 1
        self.progress.event(trial.number, result.status.value.lower(), result.error or self._fmt(result))
        w.task, w.trial = None, None
        self.progress.finished(self._counts(), [x for x in self.workers if x.task is not None])

    def _fmt(self, result: TrialResult) -> str:
        return " ".join(f"{k}={result.metrics[k]:.4g}" for k in self.cfg.objectives if k in result.metrics) + f" in {result.duration_s:.1f}s"

    def _worker_lost(self, w: Worker, reason: str) -> None:
        """The worker died or was killed while running a trial: fail it, close its run, retry, replace the worker."""
        import optuna

        if w.trial is not None:
            trial = w.trial
            trial.set_user_attr("failure_reason", reason)
            if w.run_id:
                trial.set_user_attr("mlflow_run_id", w.run_id)
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            self.session_failures += 1
            frozen = self.study._storage.get_trial(trial._trial_id)
            self._close_orphan(frozen, reason)
            self._maybe_retry(self.study, frozen)
            self.progress.event(trial.number, "failed", reason)
        if w.proc is not None and w.proc.is_alive():
            w.proc.kill()
            w.proc.join(5)
        if not self.stopping:
            self._spawn(w)

    def _handle(self, w: Worker, msg: dict) -> None:
        kind = msg.get("type")
        if kind == "ready":
            w.ready = True
            if self.t_ready is None and all(x.ready for x in self.workers):
                self.t_ready = time.time()
        elif kind == "started":
            w.run_id = msg.get("run_id")
            if w.run_id and w.trial is not None:
                w.trial.set_user_attr("mlflow_run_id", w.run_id)
        elif kind == "report":
            prune = False
            if w.trial is not None and len(self.cfg.objectives) == 1:
                value = msg["metrics"].get(self.cfg.objectives[0])
                if value is not None:
                    w.trial.report(float(value), int(msg["step"]))
                    prune = w.trial.should_prune()
            w.conn.send({"type": "prune_reply", "prune": prune})
        elif kind == "done":
            self._finish(w, TrialResult.from_dict(msg["result"]))

    # ---------------------------------------------------------------- main loop
    def run(self) -> SweepSummary:
        t0 = self.t_start = time.time()
        self.open()
        counts = self._counts()
        self.progress = Progress(self.cfg.progress, self.cfg.n_trials, self.study_name, self.cfg.objectives)
        self.progress.start(counts)
        max_failures = max(3, self.cfg.n_trials)
        last_beat = 0.0
        try:
            self.start_workers()
            while True:
                counts = self._counts()
                busy = [w for w in self.workers if w.task is not None]
                if self.session_failures >= max_failures and not self.stopping:
                    self.progress.message(f"stopping: {self.session_failures} failed trials in this session (see the reasons above)")
                    self.stopping = True
                if not self.stopping:
                    for w in self.workers:
                        while w.ready and w.task is None and self.session_failures < max_failures and self._want_more():
                            self._dispatch(w)
                busy = [w for w in self.workers if w.task is not None]
                counts = self._counts()
                self.progress.update(counts, busy)
                if not busy and (self.stopping or counts["finished"] >= self.cfg.n_trials):
                    break
                now = time.time()
                if now - last_beat >= self.cfg.heartbeat_interval_s / 2:
                    for w in busy:
                        self.storage.record_heartbeat(w.trial._trial_id)
                    import optuna

                    optuna.storages.fail_stale_trials(self.study)
                    last_beat = now
                ready = wait([w.conn for w in self.workers] + [w.proc.sentinel for w in self.workers], timeout=1.0)
                for w in list(self.workers):
                    if w.conn in ready:
                        try:
                            while w.conn.poll():
                                self._handle(w, w.conn.recv())
                        except (EOFError, OSError):
                            pass
                    if not w.proc.is_alive():
                        code = w.proc.exitcode
                        w.deaths = 0 if w.ready else w.deaths + 1
                        if w.deaths >= 3:
                            raise RuntimeError(f"worker {w.wid} died {w.deaths} times while starting (exit code {code}); run `python -m sweep.trial` to see the error")
                        why = f"worker {w.wid} died (exit code {code}" + (", SIGKILL: killed or out of memory)" if code == -signal.SIGKILL else ")")
                        self._worker_lost(w, why)
                    elif w.task is not None and self.cfg.trial_timeout_s and time.time() - w.started > self.cfg.trial_timeout_s:
                        w.proc.kill()
                        w.proc.join(5)
                        self._worker_lost(w, f"timeout: trial exceeded sweep.trial_timeout_s={self.cfg.trial_timeout_s:g}")
        except KeyboardInterrupt:
            self.interrupted = True
            self.stopping = True
            self.progress.message("interrupted: stopping workers, marking running trials FAIL (rerun the same command to resume)")
            for w in self.workers:
                if w.task is not None:
                    self._worker_lost(w, "interrupted (Ctrl-C); rerun the same command to resume")
        finally:
            self.stopping = True
            self.stop_workers(force=self.interrupted)
            if self.progress:
                self.progress.close()
            if self.conf is not None:
                import shutil

                shutil.rmtree(self.conf, ignore_errors=True)
            if self.ml:
                from sweep.tracking.mlflow_tracker import finish_run

                try:
                    finish_run(self.ml["tracking_uri"], self.ml["parent_run_id"], "KILLED" if self.interrupted else "FINISHED")
                except Exception:
                    pass
        return self.summary(time.time() - t0)

    def summary(self, wall_s: float) -> SweepSummary:
        counts = self._counts()
        best = []
        try:
            seen: set = set()
            for t in self.study.best_trials:
                h = t.user_attrs.get("config_hash")
                if h in seen:  # reused copies of one config
                    continue
                seen.add(h)
                best.append({"number": t.number, "values": t.values, "hash": h, "params": t.params})
            best = best[:5]
        except (ValueError, RuntimeError):
            pass
        return SweepSummary(self.study_name, self.url, counts["COMPLETE"], counts["PRUNED"], counts["FAIL"], wall_s,
                            self.compute_s, best, self.interrupted,
                            startup_s=(self.t_ready or time.time()) - self.t_start, trials_run=self.trials_run)
