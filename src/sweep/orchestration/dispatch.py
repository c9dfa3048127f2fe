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
        self.waiting: list[tuple] = []  # (trial, config dict, hash, twin number): same config training elsewhere
        self.ready: list[Pending] = []  # trials whose twin did not complete: to train on the next idle worker

    def want_more(self) -> bool:
        """Another trial is needed: finished + running (on every machine) is short of n_trials."""
        c = self.study.counts()
        return c["finished"] + c["RUNNING"] < self.cfg.n_trials

    def next(self) -> Pending | None:
        """The next trial for an idle worker: one whose twin has since failed, else a new one asked from Optuna.
        None when the trial was settled here (reused, invalid config) or waits for a twin running elsewhere."""
        if self.ready:
            return self.ready.pop(0)
        trial = self.study.study.ask()
        n = trial.number
        self.study.set_attrs(n, {OWNER_ATTR: self.owner})
        self.study.heartbeat([n])
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
        if self.cfg.reuse_completed:
            prior = self._completed(h)
            if prior is not None:
                self._reuse(trial, prior, h, tdict)
                return None
            twin = self._running_twin(h, n)
            if twin is not None:  # the same config is training right now: wait for its result instead of training it twice
                self.waiting.append((trial, tdict, h, twin))
                self.progress.event(n, "waiting", f"config {h} is being trained as trial {twin}")
                return None
        return self._pending(trial, tdict, h)

    def _pending(self, trial, tdict: dict, h: str) -> Pending:
        n = trial.number
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

    def _running_twin(self, h: str, number: int) -> int | None:
        """Another RUNNING trial (any machine's) training config hash `h`, not itself waiting for one."""
        waiting = {t.number for t, *_ in self.waiting}
        for t in self.study.trials("RUNNING"):
            if t.number != number and t.number not in waiting and t.user_attrs.get("config_hash") == h:
                return t.number
        return None

    def settle_waiting(self) -> None:
        """Trials waiting for a twin: reuse its result once it completed; train them once it did not."""
        still = []
        for trial, tdict, h, twin in self.waiting:
            state = self.study.trial(twin).state.name
            if state == "RUNNING":
                still.append((trial, tdict, h, twin))
                continue
            prior = self._completed(h)
            if prior is not None:
                self._reuse(trial, prior, h, tdict)
            else:
                self.ready.append(self._pending(trial, tdict, h))
        self.waiting = still

    def held(self) -> list[int]:
        """Numbers of trials asked here that no worker runs yet (waiting for a twin, or ready)."""
        return [t.number for t, *_ in self.waiting] + [p.number for p in self.ready]

    def _reuse(self, trial, prior, h: str, tdict: dict) -> None:
        """A config hash that already completed: copy its result instead of retraining."""
        from sweep.provenance import git_state

        metrics = dict(prior.user_attrs.get("metrics") or {})
        tags = {T.STUDY: self.study.name, T.TRIAL_NUMBER: str(trial.number), T.CONFIG_HASH: h, T.EXPERIMENT: self.rc.name,
                T.SEED: str(tdict["train"]["seed"]), T.STATUS: "COMPLETE", T.REUSED_FROM: str(prior.number),
                T.DEVICE: str(prior.user_attrs.get("device", "")), T.GIT_SHA: str(git_state()["git_sha"])}
        run_id = self.tracking.record_reuse(tags, tdict, metrics)
        self._reuse_folder(trial.number, prior, h, tdict)
        self.study.set_attrs(trial.number, {"metrics": metrics, "reused_from": prior.number,
                                            **({"mlflow_run_id": run_id} if run_id else {})})
        self.study.study.tell(trial, prior.values)
        self.progress.event(trial.number, "reused", f"config {h} already completed as trial {prior.number}")

    def _reuse_folder(self, number: int, prior, h: str, tdict: dict) -> None:
        """The reused trial's folder: its config, the prior result marked `reused_from`, a link to the prior adapter."""
        import json

        import yaml

        src, dst = trial_folder(self.out_dir, prior.number, h), trial_folder(self.out_dir, number, h)
        try:
            dst.mkdir(parents=True, exist_ok=True)
            (dst / "config.yaml").write_text(yaml.safe_dump(tdict, sort_keys=False))
            result = json.loads((src / "result.json").read_text()) if (src / "result.json").is_file() else {}
            result.update({"reused_from": prior.number, "output_dir": str(dst)})
            (dst / "result.json").write_text(json.dumps(result, indent=2, sort_keys=True))
            if (src / "adapter").is_dir() and not (dst / "adapter").exists():
                (dst / "adapter").symlink_to(Path("..") / src.name / "adapter", target_is_directory=True)
        except OSError as exc:  # the copy is a convenience: the result itself is in Optuna and MLflow
            self.progress.message(f"trial {number}: could not write its folder {dst}: {exc}")

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
