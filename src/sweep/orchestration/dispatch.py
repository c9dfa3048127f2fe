"""Dispatch: Optuna's ask and tell, and the task a worker receives.

`next()` hands an idle worker its next task: the study's baseline when a trial's base
model has none yet, a trial whose twin has since failed, or a new trial. A new trial is
proposed by its question arm's sampler (arms.py) or by the study's own; its config is
composed and either becomes a task or is settled on the spot (a config that does not
validate fails, one over the sweep's budgets is ruled out untrained (sweep.plan.budget), a completed config hash
is reused, one training elsewhere waits for it).
`tell()` turns a worker's TrialResult into Optuna's state and values (mirrored to the arm); `lost()` settles a
task whose worker died or was stopped (through recovery); `drop_held()` fails what was asked but never handed out.

The dispatcher owns what it asked and has not handed out (ready tasks, trials waiting for a twin) and this
session's failure count; the coordinator reads them through `has_ready`, `waiting_for_twin`, `held` and `failures`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from sweep.baseline import baseline_key
from sweep.config.compose import RunConfig, trial_dict
from sweep.config.errors import ConfigError
from sweep.config.hashing import config_hash
from sweep.config.schema import TrialConfig
from sweep.config.snapshot import ConfSnapshot
from sweep.orchestration import records as R
from sweep.orchestration import space as sp
from sweep.orchestration.arms import Arms
from sweep.orchestration.baselines import Baselines
from sweep.orchestration.protocol import Task, TrialTask
from sweep.orchestration.recovery import Recovery, trial_folder
from sweep.orchestration.reuse import Reuse
from sweep.orchestration.study import INFEASIBLE, Counts, SweepStudy
from sweep.faults import ran_out_of_memory
from sweep.measure.gpu_share import GpuShare
from sweep.plan.budget import Budget, Verdict, rule_out
from sweep.results import TrialResult, TrialStatus, objective_values
from sweep.tracking import tags as T

RULED_OUT_IN_A_ROW = 100  # proposals in a row ruled out by the budgets: the sweep stops (the space barely fits)
FAULTS_ENV = "LORASWEEP_FAULTS"  # test hook: "3:oom,5:nan,2:kill,4:disk_full" (trial number: fault)


def faults_from_env() -> dict[int, str]:
    out = {}
    for part in filter(None, (p.strip() for p in os.environ.get(FAULTS_ENV, "").split(","))):
        num, _, kind = part.partition(":")
        out[int(num)] = kind
    return out


@dataclass
class Pending:
    """A task handed (or about to be handed) to a worker: a trial asked from Optuna, or a baseline."""

    trial: Any  # optuna.Trial of the main study (report/should_prune, tell); None for a baseline
    task: Task | None  # None: a trial whose config did not compose (failed untrained)
    started: float = 0.0
    run_id: str | None = None
    arm_trial: Any = None  # the arm study's mirror trial (pruning within the arm)
    record: Callable[[], None] | None = None  # bookkeeping writes done once the task is handed over (Dispatcher.handed)

    @property
    def number(self) -> int:
        return self.trial.number if self.trial is not None else -1

    @property
    def is_baseline(self) -> bool:
        return self.trial is None


class Dispatcher:
    def __init__(self, run: RunConfig, study: SweepStudy, arms: Arms | None, tracking, snapshot: ConfSnapshot, *,
                 recovery: Recovery, owner: str, out_dir: Path, progress):
        self.rc = run
        self.cfg = run.sweep
        self.study = study
        self.arms = arms
        self.tracking = tracking
        self.snapshot = snapshot
        self.recovery = recovery
        self.owner = owner
        self.out_dir = out_dir
        self.progress = progress
        self.base = run.trial_base
        self.group_params = sp.group_params(self.cfg.space)
        self.faults = faults_from_env()
        self.reuse = Reuse(study, tracking, out_dir, progress)
        self.baselines = Baselines(study, tracking, out_dir, progress, enabled=self.cfg.baseline)
        self._ready: list[Pending] = []  # tasks to hand out before asking for new trials
        self._failures = 0  # trials failed in this session (a runaway failure loop stops the sweep)
        self.budget = Budget.of(self.cfg)
        self._verdicts: dict[str, Verdict | None] = {}  # config hash -> its verdict (a proposal may come back)
        self._ruled_out_in_a_row = 0
        self.grid_size = sp.grid_size(self.cfg.space) if self.cfg.sampler == "grid" else None
        self.compute_s = 0.0  # summed duration of the trials this session trained
        self.trials_run = 0

    # ---------------------------------------------------------------- what it holds
    @property
    def failures(self) -> int:
        """Trials failed in this session: untrained, failed by their worker, or lost."""
        return self._failures

    def has_ready(self) -> bool:
        """A task waits to be handed out (a baseline, a trial whose twin failed): no new trial needs asking."""
        return bool(self._ready)

    def waiting_for_twin(self) -> bool:
        """A trial waits for its twin's result (settled by settle_waiting)."""
        return bool(self.reuse.waiting)

    # ---------------------------------------------------------------- asking
    def counts(self) -> Counts:
        """The study's counts, with finished + running trials per question arm when there are arms (one read)."""
        return self.study.counts(R.ARM if self.arms is not None else None)

    def target(self, counts: Counts) -> int:
        """The finished trials the study should reach: sweep.n_trials, less what configs ruled out by the budgets
        take away: with the grid sampler, no more than the grid points not ruled out (a grid proposes each once);
        with question arms, no more than the arms can still reach (Arms.capacities)."""
        n = self.cfg.n_trials
        if not counts[INFEASIBLE]:
            return n
        if self.grid_size is not None:
            n = min(n, self.grid_size - counts.ruled_out_points)
        if self.arms is not None:
            n = min(n, sum(self.arms.capacities(counts).values()))
        return n

    def want_more(self, counts: dict[str, int]) -> bool:
        """Another trial is needed: finished + running (on every machine, `counts` from study.counts()) is short of
        the target (n_trials; configs ruled out before training do not count)."""
        return counts["finished"] + counts["RUNNING"] < self.target(counts)

    def stuck(self) -> str | None:
        """Why the sweep should stop asking: every recent proposal was ruled out by the budgets. A grid is bounded
        by its points and question arms close one by one (Arms.capacities), so this is for the other samplers."""
        if self.grid_size is not None or self.arms is not None or self._ruled_out_in_a_row < RULED_OUT_IN_A_ROW:
            return None
        return (f"stopping: the last {self._ruled_out_in_a_row} configs proposed were all ruled out before training "
                "by sweep.memory_budget_mb / sweep.max_trainable_params (python -m sweep.plan shows what fits; "
                "narrow the space or raise the budget)")

    def held(self) -> list[Pending]:
        """Trials asked here that no worker runs yet (waiting for a twin, or ready)."""
        return [p for p, _ in self.reuse.waiting] + [p for p in self._ready if not p.is_baseline]

    def next(self, counts: Counts | None = None) -> Pending | None:
        """The next task for an idle worker, or None when the trial was settled here or waits for its twin.
        `counts`: the study's read for want_more just before (its counts, per-arm fill and config-hash indexes).

        Only what the task needs happens before it is handed over: the ask, the parameters, the config and its
        hash, the reuse lookups. The trial's owner is written at once (recovery needs it); its config hash, heartbeat
        and arm link are the returned task's `record`, run by `handed` once a worker has it, so that they are
        written while the trial starts rather than before."""
        if self._ready:
            return self._ready.pop(0)
        counts = counts if counts is not None else self.counts()
        trial, arm_trial, params = self._ask(counts)
        n = trial.number
        alone = bool(counts["WAITING"]) and bool(trial.user_attrs.get(R.ALONE))  # a retry with its GPU to itself
        try:
            tdict = trial_dict(self.rc.overrides, params, self.group_params, conf=self.snapshot.conf,
                               config_dirs=self.snapshot.config_dirs)
            cfg = TrialConfig.from_dict(tdict)
            tdict = cfg.to_dict()  # what `auto` resolved to (train.precision, quant.compute_dtype): what is hashed
        except ConfigError as exc:
            self._record(n, None, arm_trial)
            self.fail_untrained(Pending(trial, None, arm_trial=arm_trial), "config: " + "; ".join(exc.problems))
            return None
        h = config_hash(cfg)
        pending = self._pending(trial, tdict, h, arm_trial, alone)
        try:
            verdict = self._verdict(h, cfg)
        except ConfigError as exc:  # preflight plans the space first: a config it did not see, of a model it cannot plan
            self._record(n, h, arm_trial)
            self.fail_untrained(pending, "budget: " + "; ".join(exc.problems))
            return None
        if verdict is not None:
            self._record(n, h, arm_trial)
            self._rule_out(pending, verdict)
            return None
        self._ruled_out_in_a_row = 0
        if self.cfg.reuse_completed:
            prior = self.reuse.completed(h, counts)
            if prior is not None:
                self._record(n, h, arm_trial)
                self._reuse_done(pending, prior)
                return None
            twin = self.reuse.running_twin(h, n, counts)
            if twin is not None:  # the same config is training right now: wait for its result, do not train it twice
                self._record(n, h, arm_trial)
                self.reuse.wait(pending, twin)
                return None
        baseline = self.baselines.needed(tdict, self.owner)
        if baseline is not None:  # the base model is measured on the next free worker, after this trial started
            self._ready.insert(0, Pending(None, baseline, started=time.time()))
        pending.record = lambda: self._record(n, h, arm_trial)
        return pending

    def handed(self, pending: Pending) -> None:
        """A worker has the task: write its deferred bookkeeping (see next)."""
        record, pending.record = pending.record, None
        if record is not None:
            record()

    def _record(self, number: int, h: str | None, arm_trial) -> None:
        """The trial's config hash (reuse, twins and salvage look trials up by it), heartbeat and arm link."""
        if h is not None:
            self.study.set_config_hash(number, h)
        self.study.heartbeat([number])
        if arm_trial is not None:
            arm, mirror = arm_trial
            arm.study.set_main_trial(mirror.number, number)

    def _ask(self, counts: Counts):
        """(main trial, arm trial or None, its parameters): an enqueued trial (a retry) first, else a new proposal."""
        study = self.study.study
        if self.arms is None:
            trial = study.ask()
            self._claim(trial.number)
            return trial, None, sp.suggest(trial, self.cfg.space, self.base)
        if counts["WAITING"]:  # a retry, enqueued by recovery: its parameters are given, the arm follows them
            trial = study.ask()
            self._claim(trial.number)
            params = sp.suggest(trial, self.cfg.space, self.base)
            arm = self.arms.of(params)
            arm_trial = self.arms.follow(arm, params, self.base)
            self.study.set_arm(trial.number, arm.label, arm_trial.number)
            return trial, (arm, arm_trial), params
        # the arm's sampler proposes; the main study's trial is written with its parameters, arm link and owner at once
        capacity = self.arms.capacities(counts) if counts[INFEASIBLE] else None
        arm = self.arms.choose(counts.filled, capacity) or self.arms.arms[0]
        arm_trial, params = self.arms.propose(arm, self.base)
        trial = self.study.create_running(sp.encoded(params), sp.distributions(self.cfg.space, params, self.base),
                                          owner=self.owner, arm=arm.label, arm_trial=arm_trial.number)
        return trial, (arm, arm_trial), params

    def _claim(self, number: int) -> None:
        """This coordinator runs the trial: written at once, so that a rerun after a crash can settle it."""
        self.study.claim(number, self.owner)

    def _pending(self, trial, tdict: dict, h: str, arm_trial, alone: bool = False) -> Pending:
        n = trial.number
        tags = {T.STUDY: self.study.name, T.TRIAL_NUMBER: str(n), T.CONFIG_HASH: h, T.SEED: str(tdict["train"]["seed"]),
                T.STATUS: "RUNNING", T.EXPERIMENT: self.rc.name, T.ARM: arm_trial[0].label if arm_trial else "",
                T.BASELINE_KEY: baseline_key(tdict)}
        task = TrialTask(n, tdict, h, str(trial_folder(self.out_dir, n, h).resolve()), tags, self.tracking.trial_spec,
                         fault=self.faults.get(n), alone=alone)
        return Pending(trial, task, started=time.time(), arm_trial=arm_trial)

    def _verdict(self, h: str, cfg: TrialConfig) -> Verdict | None:
        if not self.budget.active:
            return None
        if h not in self._verdicts:
            self._verdicts[h] = rule_out(cfg, self.budget)
        return self._verdicts[h]

    # ---------------------------------------------------------------- settling
    def _rule_out(self, pending: Pending, verdict: Verdict) -> None:
        """A config over the budgets, never trained: stored with its verdict, an MLflow run the report lists, and
        told PRUNED with a constraint violation (TPE avoids its neighbourhood); not a failure."""
        import optuna

        n, stored = pending.number, verdict.stored()
        task = pending.task
        run_id = self.tracking.record_infeasible(task.tags, task.config, verdict.metrics(), verdict.reason)
        if run_id:
            self.study.set_run_id(n, run_id)
        self.study.set_infeasible(n, stored)
        pending.trial.set_constraint(verdict.constraint, verdict.violation)
        if pending.arm_trial is not None:
            arm, arm_trial = pending.arm_trial
            arm.study.set_infeasible(arm_trial.number, stored)
            arm_trial.set_constraint(verdict.constraint, verdict.violation)
        self._tell(pending, None, optuna.trial.TrialState.PRUNED)
        self._ruled_out_in_a_row += 1
        self.progress.event(n, "ruled out", verdict.reason)

    def settle_waiting(self) -> None:
        self.reuse.settle_waiting(self._reuse_done, self._ready.append)

    def _reuse_done(self, pending: Pending, prior) -> None:
        self.reuse.reuse(pending.number, prior, pending.task)
        self._tell(pending, prior.values, None)

    def hold_back(self, pending: Pending) -> None:
        """A task that cannot start on the worker offered (an `alone` task whose GPU is busy): first in line again."""
        self._ready.insert(0, pending)

    def _retry_alone(self, pending: Pending, result: TrialResult) -> None:
        """A trial that ran out of memory on a GPU it shared with other workers may have been squeezed by them: it is
        tried once more with the GPU to itself (an OOM there is the config's). Not for a retry that already was."""
        task = pending.task
        if not (ran_out_of_memory(result.error) and GpuShare.of(result.meta.get("placement")).shared
                and isinstance(task, TrialTask) and not task.alone):
            return
        record = self.study.record(pending.number)
        self.study.enqueue_retry(pending.trial.params, record.retry_count + 1, pending.number, alone=True)
        self.progress.event(pending.number, "retrying", "out of memory on a shared GPU: once more with the GPU to itself")

    def fail_untrained(self, pending: Pending, reason: str) -> None:
        import optuna

        self.study.set_failure(pending.number, reason)
        self._tell(pending, None, optuna.trial.TrialState.FAIL)
        self._failures += 1
        self.progress.event(pending.number, "failed", reason)

    def lost(self, pending: Pending, reason: str) -> None:
        """The task's worker died, hung or was stopped: a baseline is recorded failed, a trial failed through recovery
        (its run closed, its folder marked, retried if configured)."""
        if pending.is_baseline:
            self.baselines.lost(pending.task, reason)
            return
        self._failures += 1
        self.recovery.trial_lost(pending.number, reason)
        self.progress.event(pending.number, "failed", reason)

    def drop_held(self, reason: str) -> None:
        """Trials asked but never handed to a worker in this session: failed (and retried by the next run); ready
        baselines are forgotten (the next run measures them)."""
        for pending in self.held():
            self.recovery.trial_lost(pending.number, reason)
        self.reuse.waiting, self._ready = [], []

    def _tell(self, pending: Pending, values, state) -> None:
        """Tell the main study, and mirror it to the arm's study."""
        if values is not None:
            self.study.study.tell(pending.trial, values)
        else:
            self.study.study.tell(pending.trial, state=state)
        if pending.arm_trial is not None:
            arm, arm_trial = pending.arm_trial
            if values is not None:
                arm.study.study.tell(arm_trial, values)
            else:
                arm.study.study.tell(arm_trial, state=state)

    def prune(self, pending: Pending, step: int, metrics: dict[str, float]) -> bool:
        """Feed an intermediate evaluation to the pruner (single-objective studies only): the arm's pruner, which
        compares the trial with its own arm's only, or the study's."""
        if len(self.cfg.objectives) != 1:
            return False
        value = metrics.get(self.cfg.objectives[0])
        if value is None:
            return False
        trial = pending.arm_trial[1] if pending.arm_trial is not None else pending.trial
        trial.report(float(value), int(step))
        return trial.should_prune()

    def tell(self, pending: Pending, result: TrialResult) -> None:
        """Tell Optuna a worker's result (its MLflow run is already closed)."""
        import optuna

        if pending.is_baseline:
            self.baselines.done(pending.task, result)
            return
        n = pending.number
        self.compute_s += result.duration_s
        self.trials_run += 1
        reason = result.error
        state, values = optuna.trial.TrialState.FAIL, None
        if result.status is TrialStatus.COMPLETE:
            values = objective_values(result.metrics, self.cfg.objectives)
            if values is None:
                reason = f"objective metric missing or not finite: {self.cfg.objectives}"
            else:
                state = optuna.trial.TrialState.COMPLETE
        elif result.status is TrialStatus.PRUNED:
            state = optuna.trial.TrialState.PRUNED
        run = R.RunInfo(str(result.meta.get("device", "")), result.duration_s, result.meta.get("bookkeeping_s"))
        self.study.set_outcome(n, result.json_metrics(), run, reason)
        self._tell(pending, values, None if values is not None else state)
        if state is optuna.trial.TrialState.FAIL:
            self._failures += 1
            self._retry_alone(pending, result)
        detail = result.error or " ".join(f"{k}={result.metrics[k]:.4g}" for k in self.cfg.objectives if k in result.metrics)
        self.progress.event(n, result.status.value.lower(), f"{detail} in {result.duration_s:.1f}s")
