"""Dispatch: Optuna's ask and tell, and the task a worker receives for a trial.

`next()` asks the study for a trial, samples its parameters, composes its config and
either hands back a task for a worker or settles the trial on the spot (a config that
does not validate fails, a config hash that already completed is reused instead of
retrained). `tell()` turns a worker's TrialResult into Optuna's state and values.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweep.config.compose import RunConfig, trial_dict
from sweep.config.errors import ConfigError
from sweep.config.hashing import config_hash
from sweep.config.schema import TrialConfig
from sweep.config.snapshot import ConfSnapshot
from sweep.orchestration import space as sp
from sweep.orchestration.recovery import OWNER_ATTR, trial_folder
from sweep.orchestration.study import SweepStudy
from sweep.results import TrialResult, TrialStatus, objective_values
from sweep.tracking import tags as T

FAULTS_ENV = "LORASWEEP_FAULTS"  # test hook: "3:oom,5:nan,2:kill" (trial number: fault)


def faults_from_env() -> dict[int, str]:
    out = {}
    for part in filter(None, (p.strip() for p in os.environ.get(FAULTS_ENV, "").split(","))):
        num, _, kind = part.partition(":")
        out[int(num)] = kind
    return out


@dataclass
class Pending:
    """A trial asked from Optuna, with the task that runs it."""

    trial: Any  # optuna.Trial (for report/should_prune)
    task: dict
    started: float = 0.0
    run_id: str | None = None

    @property
    def number(self) -> int:
        return self.trial.number


class Dispatcher:
    def __init__(self, run: RunConfig, study: SweepStudy, tracking, snapshot: ConfSnapshot, *, owner: str, out_dir: Path,
                 progress):
        self.rc = run
        self.cfg = run.sweep
        self.study = study
        self.tracking = tracking
        self.snapshot = snapshot
        self.owner = owner
        self.out_dir = out_dir
        self.progress = progress
        self.base = run.trial_base
        self.group_params = sp.group_params(self.cfg.space)
        self.faults = faults_from_env()
        self.failures = 0  # trials failed in this session (a runaway failure loop stops the sweep)
        self.compute_s = 0.0  # summed duration of the trials this session trained
        self.trials_run = 0

    def want_more(self) -> bool:
        """Another trial is needed: finished + running (on every machine) is short of n_trials."""
        c = self.study.counts()
        return c["finished"] + c["RUNNING"] < self.cfg.n_trials

    def next(self) -> Pending | None:
        """Ask for a trial; a Pending to hand to a worker, or None when it was settled here."""
        trial = self.study.study.ask()
        n = trial.number
        self.study.heartbeat([n])
        self.study.set_attrs(n, {OWNER_ATTR: self.owner})
        try:
            params = sp.suggest(trial, self.cfg.space, self.base)
            tdict = trial_dict(self.rc.overrides, params, self.group_params, conf=self.snapshot.conf,
                               config_dirs=self.snapshot.config_dirs)
            cfg = TrialConfig.from_dict(tdict)
        except ConfigError as exc:
            self.fail_untrained(trial, "config: " + "; ".join(exc.problems))
            return None
        h = config_hash(cfg)
        self.study.set_attrs(n, {"config_hash": h, "sampled_params": {k: (v if not isinstance(v, (list, dict)) else str(v))
                                                                      for k, v in params.items()}})
        prior = self._completed(h) if self.cfg.reuse_completed else None
        if prior is not None:
            self._reuse(trial, prior, h, tdict)
            return None
        tags = {T.STUDY: self.study.name, T.TRIAL_NUMBER: str(n), T.CONFIG_HASH: h, T.SEED: str(tdict["train"]["seed"]),
                T.STATUS: "RUNNING", T.EXPERIMENT: self.rc.name}
        task = {"type": "run", "trial_number": n, "config": tdict, "config_hash": h,
                "output_dir": str(trial_folder(self.out_dir, n, h).resolve()),
                "max_trainable_params": self.cfg.max_trainable_params, "fault": self.faults.get(n),
                "tracking": self.tracking.trial_spec, "tags": tags}
        return Pending(trial, task, started=time.time())

    def _completed(self, h: str):
        """The first trial that completed config hash `h` by training (not by reuse), or None."""
        for t in self.study.trials("COMPLETE"):
            if t.user_attrs.get("config_hash") == h and "reused_from" not in t.user_attrs:
                return t
        return None

    def _reuse(self, trial, prior, h: str, tdict: dict) -> None:
        """A config hash that already completed: copy its result instead of retraining."""
        from sweep.provenance import git_state

        metrics = dict(prior.user_attrs.get("metrics") or {})
        tags = {T.STUDY: self.study.name, T.TRIAL_NUMBER: str(trial.number), T.CONFIG_HASH: h, T.EXPERIMENT: self.rc.name,
                T.SEED: str(tdict["train"]["seed"]), T.STATUS: "COMPLETE", T.REUSED_FROM: str(prior.number),
                T.DEVICE: str(prior.user_attrs.get("device", "")), T.GIT_SHA: str(git_state()["git_sha"])}
        run_id = self.tracking.record_reuse(tags, tdict, metrics)
        self.study.set_attrs(trial.number, {"metrics": metrics, "reused_from": prior.number,
                                            **({"mlflow_run_id": run_id} if run_id else {})})
        self.study.study.tell(trial, prior.values)
        self.progress.event(trial.number, "reused", f"config {h} already completed as trial {prior.number}")

    def fail_untrained(self, trial, reason: str) -> None:
        import optuna

        self.study.set_attrs(trial.number, {"failure_reason": reason})
        self.study.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        self.failures += 1
        self.progress.event(trial.number, "failed", reason)

    def prune(self, pending: Pending, step: int, metrics: dict[str, float]) -> bool:
        """Feed an intermediate evaluation to the pruner (single-objective studies only)."""
        if len(self.cfg.objectives) != 1:
            return False
        value = metrics.get(self.cfg.objectives[0])
        if value is None:
            return False
        pending.trial.report(float(value), int(step))
        return pending.trial.should_prune()

    def tell(self, pending: Pending, result: TrialResult) -> None:
        """Tell Optuna a worker's result (its MLflow run is already closed)."""
        import optuna

        n = pending.number
        self.compute_s += result.duration_s
        self.trials_run += 1
        attrs = {"metrics": result.json_metrics(), "device": str(result.meta.get("device", "")),
                 "duration_s": result.duration_s}
        if result.error:
            attrs["failure_reason"] = result.error
        state, values = optuna.trial.TrialState.FAIL, None
        if result.status is TrialStatus.COMPLETE:
            values = objective_values(result.metrics, self.cfg.objectives)
            if values is None:
                attrs["failure_reason"] = f"objective metric missing or not finite: {self.cfg.objectives}"
            else:
                state = optuna.trial.TrialState.COMPLETE
        elif result.status is TrialStatus.PRUNED:
            state = optuna.trial.TrialState.PRUNED
        self.study.set_attrs(n, attrs)
        if state is optuna.trial.TrialState.COMPLETE:
            self.study.study.tell(pending.trial, values)
        else:
            self.study.study.tell(pending.trial, state=state)
        if state is optuna.trial.TrialState.FAIL:
            self.failures += 1
        detail = result.error or " ".join(f"{k}={result.metrics[k]:.4g}" for k in self.cfg.objectives if k in result.metrics)
        self.progress.event(n, result.status.value.lower(), f"{detail} in {result.duration_s:.1f}s")
