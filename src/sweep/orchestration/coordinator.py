"""The sweep loop: ask Optuna for a trial the moment a worker is free, tell it the result.

One coordinator keeps the study and the MLflow parent run; its workers (a WorkerPool:
local processes, or Ray actors across a cluster) run the trials. Coordinators on other
machines may join the same study through the same storage URL. No batch barrier.
The rooms: pool (where trials run), dispatch (ask/tell), recovery (dead workers and
coordinators, retries, MLflow reconciliation), sweep_run (the study's MLflow runs).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from sweep.config import snapshot
from sweep.config.compose import RunConfig
from sweep.orchestration.arms import Arms, arm_keys
from sweep.orchestration.arms import describe as describe_arms
from sweep.orchestration.dispatch import Dispatcher, Pending
from sweep.orchestration.pool import Recycler, WorkerPool, plan_workers
from sweep.orchestration.protocol import Done, Lost, PruneReply, Ready, Report, Started, Tracked
from sweep.orchestration.progress import Progress
from sweep.orchestration.recovery import Recovery
from sweep.orchestration.study import INFEASIBLE, SweepStudy, optuna_nop, optuna_random, storage_url
from sweep.orchestration.summary import SweepSummary, best_trials
from sweep.results import TrialResult
from sweep.tracking import tags as T
from sweep.tracking.sweep_run import sweep_tracking


def _changes_counts(ev) -> bool:
    """The event's handling may change a trial's state (told, lost) or add a retry."""
    return isinstance(ev, (Tracked, Lost)) or (isinstance(ev, Done) and ev.tracked)


class Terminated(KeyboardInterrupt):
    """SIGTERM (what schedulers and `kill` send): handled exactly like Ctrl-C."""


def _on_sigterm(_signum, _frame):
    raise Terminated("SIGTERM")


def make_pool(run: RunConfig, log) -> WorkerPool:
    cfg = run.sweep
    recycler = Recycler(cfg.recycle_growth_mb, cfg.recycle_after)
    # a worker given a GPU must be able to use it, unless the trials train on the CPU anyway (train.device=cpu:
    # the test settings on a GPU host, logical GPUs of a Ray test cluster)
    check_gpu = run.trial.train.device != "cpu"
    if cfg.backend == "ray":
        from sweep.orchestration.ray_pool import RayPool

        return RayPool(cfg, recycler, log=log, check_gpu=check_gpu)
    from sweep.orchestration.local_pool import LocalPool

    return LocalPool(plan_workers(cfg.workers, cfg.workers_per_gpu, cfg.threads_per_worker,
                                  gpus_per_worker=cfg.gpus_per_worker), recycler, log=log, check_gpu=check_gpu)


@dataclass
class Session:
    """What a coordinator opens for one run, built whole by `Coordinator.open` (nothing half-made to guard)."""

    progress: Progress
    tracking: object  # SweepTracking | NullSweepTracking
    study: SweepStudy
    arms: Arms | None
    recovery: Recovery
    snapshot: object  # ConfSnapshot: the config folders as this run composed them
    dispatch: Dispatcher


class Coordinator:
    def __init__(self, run: RunConfig, pool: WorkerPool | None = None):
        self.rc = run
        self.cfg = run.sweep
        self.study_name = run.study_name
        self.out_dir = Path(self.cfg.output_dir) / self.study_name
        self.url = storage_url(self.cfg.storage, self.cfg.output_dir, self.study_name)
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.pool = pool
        self.session: Session | None = None
        self.inflight: dict[int, Pending] = {}  # worker id -> its task
        self.finishing: dict[int, tuple[int, Pending, TrialResult]] = {}  # trial number -> (worker, trial, result): run closing
        self.interrupted = False
        self.terminated = False  # interrupted by SIGTERM rather than Ctrl-C
        self.t_start = time.time()
        self.t_ready: float | None = None

    # ---------------------------------------------------------------- set-up
    def open(self) -> Session:
        progress = Progress(self.cfg.progress, self.cfg.n_trials, self.study_name, self.cfg.objectives)
        try:
            return self._open(progress)
        except BaseException:
            progress.close()
            raise

    def _open(self, progress: Progress) -> Session:
        tracking = sweep_tracking(self.rc, self.study_name, self.url, {T.ARMS: json.dumps(describe_arms(self.cfg))})
        recovery: list[Recovery] = []  # Optuna's stale-trial callback needs it before it exists
        arms = arm_keys(self.cfg)
        quiet = dict(sampler=optuna_random(self.cfg), pruner=optuna_nop()) if arms else {}  # the arms sample and prune
        study = SweepStudy(self.cfg, self.study_name, self.url, on_stale=lambda s, t: recovery[0].on_stale(s, t), **quiet)
        study.set_experiment(self.rc.name)
        arm_set = Arms(self.cfg, study) if arms else None
        tracking.open()
        try:
            recovery.append(Recovery(study, tracking, retry_failed=self.cfg.retry_failed, objectives=self.cfg.objectives,
                                     out_dir=self.out_dir, log=progress.message))
            recovery[0].settle_orphans(self.cfg.grace_period_s)
            recovery[0].reconcile()
            if arm_set is not None:
                arm_set.sync(study, self.cfg.grace_period_s)
        except BaseException:  # interrupted while settling: the parent run is closed, the rerun settles the rest
            tracking.close(True)
            raise
        snap = snapshot.take(self.rc.config_dirs)
        dispatch = Dispatcher(self.rc, study, arm_set, tracking, snap, recovery=recovery[0], owner=self.owner,
                              out_dir=self.out_dir, progress=progress)
        return Session(progress, tracking, study, arm_set, recovery[0], snap, dispatch)

    # ---------------------------------------------------------------- events
    def _handle(self, ev) -> None:
        s = self.session
        pending = self.inflight.get(ev.wid)
        if isinstance(ev, Ready):
            if self.t_ready is None:
                self.t_ready = time.time()
        elif isinstance(ev, Started) and pending is not None:
            pending.run_id = ev.run_id
            if ev.run_id and not pending.is_baseline:
                s.study.set_run_id(pending.number, ev.run_id)
        elif isinstance(ev, Report):
            prune = pending is not None and s.dispatch.prune(pending, ev.step, ev.metrics)
            self.pool.reply(ev.wid, PruneReply(ev.trial_number, prune))
        elif isinstance(ev, Done) and pending is not None:
            del self.inflight[ev.wid]
            if ev.tracked:
                self._tell(pending, ev.result)
            else:  # the worker takes its next trial while it closes this one's MLflow run: told once closed
                self.finishing[pending.number] = (ev.wid, pending, ev.result)
        elif isinstance(ev, Tracked) and ev.trial_number in self.finishing:
            _, done, result = self.finishing.pop(ev.trial_number)
            self._tell(done, result)
        elif isinstance(ev, Lost):
            for number, (wid, done, result) in list(self.finishing.items()):
                if wid == ev.wid:  # finished, its run not closed: told now; MLflow is reconciled with it
                    del self.finishing[number]
                    self._tell(done, result)
            if pending is not None:
                del self.inflight[ev.wid]
                s.dispatch.lost(pending, ev.reason)

    def _beside_alone(self, wid: int) -> bool:
        """A worker whose GPU a neighbour has to itself right now (an `alone` retry runs there)."""
        return any(self.inflight[n].task.alone for n in self.pool.neighbours(wid) if n in self.inflight)

    def _tell(self, pending: Pending, result: TrialResult) -> None:
        self.session.dispatch.tell(pending, result)
        self.session.progress.finished(self.session.study.counts(), len(self.inflight))

    def _message(self, text: str) -> None:
        (self.session.progress.message if self.session is not None else print)(text)

    def _check_timeouts(self) -> bool:
        """Stop the trials past sweep.trial_timeout_s; whether there were any."""
        limit, any_lost = self.cfg.trial_timeout_s, False
        for wid, pending in list(self.inflight.items()):
            if limit and time.time() - pending.started > limit:
                del self.inflight[wid]
                self.pool.kill(wid, "timeout")
                self.session.dispatch.lost(pending, f"timeout: trial exceeded sweep.trial_timeout_s={limit:g}")
                any_lost = True
        return any_lost

    # ---------------------------------------------------------------- main loop
    def run(self) -> SweepSummary:
        self.t_start = time.time()
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            # workers import torch/peft while this process opens the study and the MLflow run
            self.pool = self.pool or make_pool(self.rc, self._message)
            self.pool.start()
            self.session = self.open()
            s = self.session
            s.progress.n_trials = s.dispatch.target(s.dispatch.counts())
            s.progress.start(s.study.counts())
            self._loop(self.session)
        except KeyboardInterrupt as exc:
            self.interrupted = True
            self.terminated = isinstance(exc, Terminated)
            what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted (Ctrl-C)"
            self._message(f"{what}: stopping workers, marking running trials FAIL (rerun the same command to resume)")
            if self.session is not None:
                self._stop_session(self.session, what)
        finally:
            self._close()
            signal.signal(signal.SIGTERM, previous)
        return self.summary(time.time() - self.t_start)

    def _stop_session(self, s: Session, what: str) -> None:
        """Interrupted: finished trials keep their results, running and held ones fail (a rerun retries them)."""
        for _, done, result in list(self.finishing.values()):
            s.dispatch.tell(done, result)
        self.finishing.clear()
        for pending in list(self.inflight.values()):
            s.dispatch.lost(pending, f"{what}; rerun the same command to resume")
        self.inflight.clear()
        s.dispatch.drop_held(f"{what} before it ran")

    def _loop(self, s: Session) -> None:
        max_failures = max(3, self.cfg.n_trials)
        stopping, last_beat = False, 0.0
        fresh = None  # the counts read just before the last wait for events, while nothing has changed them since
        while True:
            if s.dispatch.failures >= max_failures and not stopping:
                s.progress.message(f"stopping: {s.dispatch.failures} failed trials in this session (see the reasons above)")
                stopping = True
            stuck = s.dispatch.stuck()
            if stuck and not stopping:
                s.progress.message(stuck)
                stopping = True
            s.dispatch.settle_waiting()
            if not stopping:
                for wid in self.pool.idle():
                    if self._beside_alone(wid):  # a neighbour has the GPU to itself
                        continue
                    while wid not in self.inflight and s.dispatch.failures < max_failures and not s.dispatch.stuck():
                        counts = None
                        if not s.dispatch.has_ready():
                            counts, fresh = fresh or s.dispatch.counts(), None
                            if not s.dispatch.want_more(counts):
                                break
                        pending = s.dispatch.next(counts)
                        if pending is not None and pending.task.alone and any(
                                n in self.inflight for n in self.pool.neighbours(wid)):
                            s.dispatch.hold_back(pending)  # its GPU is busy: it waits, first in line, for it
                            break
                        if pending is not None:
                            self.inflight[wid] = pending
                            self.pool.submit(wid, pending.task)
                            s.dispatch.handed(pending)
                            what = ("the base model without an adapter (baseline)" if pending.is_baseline
                                    else f"hash {pending.task.config_hash}")
                            s.progress.event(pending.number, "started", f"{self.pool.describe(wid)}: {what}")
            counts = s.dispatch.counts()
            target = s.dispatch.target(counts)  # n_trials less what the budgets ruled out of a grid or an arm
            s.progress.n_trials = target
            s.progress.update(counts, len(self.inflight))
            if not self.inflight and not self.finishing and not s.dispatch.held() and not s.dispatch.has_ready() and (
                    stopping or counts["finished"] >= target):
                return
            if stopping and not self.inflight and not self.finishing:  # held trials will not run in this session
                s.dispatch.drop_held("the sweep stopped before it could run")
                return
            beat = time.time() - last_beat >= self.cfg.heartbeat_interval_s / 2
            if beat:
                finishing = [done for _, done, _ in self.finishing.values()]
                s.study.heartbeat([p.number for p in [*self.inflight.values(), *finishing, *s.dispatch.held()]
                                   if not p.is_baseline])
                s.recovery.settle_orphans(self.cfg.grace_period_s)
                if s.arms:
                    s.arms.sync(s.study, self.cfg.grace_period_s)
                last_beat = time.time()
            events = self.pool.events(timeout=1.0)
            for ev in events:
                self._handle(ev)
            timed_out = self._check_timeouts()
            # a worker that just finished gets its next trial without another read of the study: the counts read
            # before the wait still hold unless a trial was told, lost, settled or retried since (a trial that
            # finished but is not told yet still counts as running, as it would in a new read)
            unchanged = not (beat or timed_out or s.dispatch.waiting_for_twin() or any(_changes_counts(ev) for ev in events))
            fresh = counts if unchanged else None

    def _close(self) -> None:
        if self.pool is not None:
            self.pool.stop(force=self.interrupted)
        s = self.session
        if s is None:
            return
        s.progress.close()
        s.snapshot.remove()
        s.recovery.reconcile()
        if s.arms:
            s.arms.sync(s.study, self.cfg.grace_period_s)
        s.tracking.close(self.interrupted)

    def summary(self, wall_s: float) -> SweepSummary:
        s = self.session
        if s is None:
            return SweepSummary(self.study_name, self.url, 0, 0, 0, wall_s, 0.0, [], self.interrupted,
                                startup_s=(self.t_ready or time.time()) - self.t_start)
        counts = s.study.counts()
        return SweepSummary(self.study_name, self.url, counts["COMPLETE"], counts["PRUNED"], counts["FAIL"], wall_s,
                            s.dispatch.compute_s, best_trials(s.study.study), self.interrupted,
                            startup_s=(self.t_ready or time.time()) - self.t_start, trials_run=s.dispatch.trials_run,
                            n_infeasible=counts[INFEASIBLE])
