"""Tracking of a whole sweep: the MLflow experiment and parent run, runs the coordinator writes itself
(reused results, runs of lost workers) and the reconciliation of MLflow with Optuna.

Optuna is the source of truth for a trial's state. `reconcile` gives every child run of the
study whose Optuna trial is no longer RUNNING that trial's terminal status, whoever wrote
the run last. `NullSweepTracking` is the same interface doing nothing (tracking=none).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sweep.tracking import mlflow_tracker as mt
from sweep.tracking import tags as T
from sweep.tracking.base import TrialTrackingSpec

@dataclass(frozen=True)
class TrialOutcome:
    """What reconciliation needs of an Optuna trial (recovery reads it from the study)."""

    state: str  # Optuna state name
    failure_reason: str = ""
    metrics: dict[str, float | None] = field(default_factory=dict)
    infeasible: bool = False  # ruled out before training (Optuna PRUNED): its run's status is INFEASIBLE

    def terminal(self) -> tuple[str, str] | None:
        """(MLflow run status, lorasweep status tag) of a trial no longer running, else None."""
        if self.infeasible and self.state == "PRUNED":
            return "FINISHED", T.INFEASIBLE
        return TERMINAL.get(self.state)


# Optuna trial state -> (MLflow run status, lorasweep status tag)
TERMINAL = {"COMPLETE": ("FINISHED", "COMPLETE"), "PRUNED": ("FINISHED", "PRUNED"), "FAIL": ("FAILED", "FAILED")}


class NullSweepTracking:
    """Tracking off: accepts every call and records nothing."""

    trial_spec: TrialTrackingSpec | None = None
    parent_run_id: str | None = None

    def open(self) -> None:
        pass

    def record_reuse(self, tags: dict[str, str], params: dict, metrics: dict[str, float]) -> str | None:
        return None

    def record_infeasible(self, tags: dict[str, str], params: dict, metrics: dict[str, float], reason: str) -> str | None:
        return None

    def close_trial_run(self, run_id: str | None, reason: str) -> None:
        pass

    def reconcile(self, trials: dict[int, TrialOutcome]) -> int:
        return 0

    def close(self, interrupted: bool) -> None:
        pass


class SweepTracking:
    """The study's MLflow experiment and parent run."""

    def __init__(self, *, tracking_uri: str, artifact_location: str, log_adapter: bool, study: str, parent_tags: dict[str, str],
                 parent_params: dict[str, Any], experiment: str | None = None):
        self.uri = mt.absolute_uri(tracking_uri)
        self.artifact_location = artifact_location
        self.log_adapter = log_adapter
        self.study = study  # the study name: the runs' lorasweep.study tag and the local artifact folder
        self.experiment = experiment or study  # the MLflow experiment name (sweep.experiment_name; may contain /)
        self.parent_tags = parent_tags
        self.parent_params = parent_params
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self.trial_spec: TrialTrackingSpec | None = None

    def open(self) -> None:
        """Create (or reuse, on resume or when another machine joined first) the experiment and the parent run."""
        with mt.init_lock(self.uri):
            self.experiment_id = mt.ensure_experiment(self.uri, self.experiment, self.artifact_location, folder=self.study)
            self.parent_run_id = self._parent_run()
        self.trial_spec = TrialTrackingSpec(self.uri, self.experiment_id, self.parent_run_id, self.log_adapter)

    def _parent_run(self) -> str:
        from mlflow.entities import RunTag

        c = mt.client(self.uri)
        query = T.role_filter(T.ROLE_PARENT, self.study)
        order = ["attributes.start_time ASC", "attributes.run_id ASC"]
        found = c.search_runs([self.experiment_id], filter_string=query, max_results=1, order_by=order)
        if found:
            run_id = found[0].info.run_id
            mt._retry(c.update_run, run_id, status="RUNNING")
        else:
            run = mt._retry(c.create_run, self.experiment_id, run_name=f"sweep:{self.study}",
                            tags={T.ROLE: T.ROLE_PARENT, T.STUDY: self.study, **self.parent_tags})
            run_id = run.info.run_id
            mt.log_params(c, run_id, self.parent_params)
            # two machines starting the same study at once may both have created one: keep the earliest
            first = c.search_runs([self.experiment_id], filter_string=query, max_results=1, order_by=order)[0].info.run_id
            if first != run_id:
                mt._retry(c.delete_run, run_id)
                run_id = first
        mt._retry(c.log_batch, run_id, tags=[RunTag(k, str(v)) for k, v in self.parent_tags.items()])
        return run_id

    def record_reuse(self, tags: dict[str, str], params: dict, metrics: dict[str, float]) -> str | None:
        """A child run for a trial that copied an earlier trial's result (nothing trained)."""
        tr = mt.MlflowTrialTracker(self.uri, self.experiment_id, self.parent_run_id,
                                   run_name=f"trial-{int(tags[T.TRIAL_NUMBER]):04d}-{tags[T.CONFIG_HASH]}-reused", tags=tags,
                                   params=params)
        tr.log_metrics({k: v for k, v in metrics.items() if v is not None})
        tr.finish("FINISHED")
        return tr.run_id

    def record_infeasible(self, tags: dict[str, str], params: dict, metrics: dict[str, float], reason: str) -> str | None:
        """A child run for a config ruled out before training (nothing trained): its config, its prediction, why."""
        tr = mt.MlflowTrialTracker(self.uri, self.experiment_id, self.parent_run_id,
                                   run_name=f"trial-{int(tags[T.TRIAL_NUMBER]):04d}-{tags[T.CONFIG_HASH]}-infeasible",
                                   tags={**tags, T.STATUS: T.INFEASIBLE, T.RULED_OUT: reason}, params=params)
        tr.log_metrics(metrics)
        tr.finish("FINISHED")
        return tr.run_id

    def close_trial_run(self, run_id: str | None, reason: str) -> None:
        """Close the run of a trial whose worker or coordinator died: FAILED with the reason."""
        if run_id:
            mt.finish_run(self.uri, run_id, "FAILED", {T.STATUS: "FAILED", T.FAILURE_REASON: reason})

    def reconcile(self, trials: dict[int, TrialOutcome]) -> int:
        """Make MLflow agree with Optuna: every child run of the study whose trial (`trials`: number -> its outcome)
        is no longer RUNNING gets that trial's terminal status and reason. Returns the number of runs fixed."""
        runs = mt.search_runs(self.uri, [self.experiment_id], T.role_filter(T.ROLE_TRIAL, self.study), frame=False)
        fixed = 0
        for run in runs:
            number = run.data.tags.get(T.TRIAL_NUMBER, "")
            trial = trials.get(int(number)) if number.lstrip("-").isdigit() else None
            terminal = trial.terminal() if trial is not None else None
            if terminal is None:
                continue
            status, tag = terminal
            if run.info.status == status and run.data.tags.get(T.STATUS) == tag:
                continue
            reason = trial.failure_reason if tag == "FAILED" else ""
            if tag == "COMPLETE":  # recovered from its folder after its worker died: its final metrics may be missing
                missing = {k: v for k, v in trial.metrics.items()
                           if v is not None and k not in run.data.metrics}
                mt.log_metrics(self.uri, run.info.run_id, missing)
            mt.finish_run(self.uri, run.info.run_id, status, {T.STATUS: tag, T.FAILURE_REASON: reason})
            fixed += 1
        return fixed

    def close(self, interrupted: bool) -> None:
        if self.parent_run_id:
            mt.finish_run(self.uri, self.parent_run_id, "KILLED" if interrupted else "FINISHED")


def sweep_tracking(run, study_name: str, storage_url: str, extra_tags: dict[str, str] | None = None
                   ) -> SweepTracking | NullSweepTracking:
    """The tracking of a sweep composed as `run` (a RunConfig): MLflow, or the null object for tracking=none."""
    if run.tracking.backend != "mlflow":
        return NullSweepTracking()
    cfg = run.sweep
    tags = {T.EXPERIMENT: run.name, T.OBJECTIVES: ",".join(cfg.objectives), T.GROUP_BY: ",".join(cfg.group_by),
            **(extra_tags or {}),
            T.STORAGE: storage_url, T.OVERRIDES: json.dumps(run.overrides), T.CONFIG_DIRS: json.dumps(run.config_dirs),
            **{f"{T.USER_TAG}{k}": str(v) for k, v in run.tags.items()}}
    params = {"sweep.n_trials": cfg.n_trials, "sweep.sampler": cfg.sampler, "sweep.pruner": cfg.pruner,
              "sweep.objectives": ",".join(cfg.objectives), "sweep.space": ",".join(cfg.space)}
    return SweepTracking(tracking_uri=run.tracking.tracking_uri, artifact_location=run.tracking.artifact_location,
                         log_adapter=run.tracking.log_adapter, study=study_name, parent_tags=tags, parent_params=params,
                         experiment=run.sweep.experiment_name or study_name)
