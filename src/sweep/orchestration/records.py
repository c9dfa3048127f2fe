"""Every name lorasweep stores in an Optuna study, in one place, with typed readers and writers.

Resumed and shared studies depend on these exact strings: a `study.db` written by an earlier version must read the
same, so a name here is never changed, only added (tests/test_records.py pins them). Nothing else spells them:
modules read a trial through `TrialRecord.of(frozen)` and write through `SweepStudy`'s typed setters (study.py),
which build their attributes with the functions below.

    trial user attributes                         written by
    config_hash   the trial's config hash          dispatch, once a worker has it
    owner         host:pid of its coordinator      dispatch, when asked (recovery settles a dead owner's trials)
    arm, arm_trial  its question arm, the arm study's mirror trial number
    main_trial    (arm studies) the main study's trial it mirrors
    metrics       final metrics (NaN stored as null) dispatch.tell, reuse, recovery's salvage
    run           {device, duration_s, bookkeeping_s[, recovered]}
    failure_reason  one line                         dispatch, recovery
    mlflow_run_id the trial's MLflow run            the coordinator when the worker says started; reuse
    reused_from   the trial whose result it copied   reuse
    retry_count, retry_of  a retry's count and the trial it retries   recovery (enqueued with them)
    alone         a retry of a trial that ran out of memory beside a neighbour on a shared GPU: it runs with the
                  GPU to itself                    dispatch (enqueued with it)
    infeasible    {reason, budget, predicted...}: ruled out before training (told PRUNED, with an Optuna constraint
                  violation, never trained; sweep.plan.budget)   dispatch

    study user attributes
    objectives    the study's objective metric names (a rerun must ask the same)
    experiment    the experiment that ran it
    baseline:KEY  {status, metrics, error, meaning | owner}: the baseline run of one base model
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# ---------------------------------------------------------------- trial user attributes
CONFIG_HASH = "config_hash"
OWNER = "owner"
ARM = "arm"
ARM_TRIAL = "arm_trial"
MAIN_TRIAL = "main_trial"
METRICS = "metrics"
RUN = "run"
FAILURE_REASON = "failure_reason"
MLFLOW_RUN_ID = "mlflow_run_id"
REUSED_FROM = "reused_from"
RETRY_COUNT = "retry_count"
RETRY_OF = "retry_of"
INFEASIBLE = "infeasible"
ALONE = "alone"

# ---------------------------------------------------------------- study user attributes
OBJECTIVES = "objectives"
EXPERIMENT = "experiment"
BASELINE_PREFIX = "baseline:"

TRIAL_ATTRS = (CONFIG_HASH, OWNER, ARM, ARM_TRIAL, MAIN_TRIAL, METRICS, RUN, FAILURE_REASON, MLFLOW_RUN_ID,
               REUSED_FROM, RETRY_COUNT, RETRY_OF, INFEASIBLE, ALONE)
STUDY_ATTRS = (OBJECTIVES, EXPERIMENT, BASELINE_PREFIX)


@dataclass(frozen=True)
class RunInfo:
    """Where and how long a trial ran (the `run` attribute)."""

    device: str = ""
    duration_s: float = 0.0
    bookkeeping_s: float | None = None
    recovered: str = ""  # how a result was recovered after its coordinator died, else empty

    def stored(self) -> dict[str, Any]:
        out: dict[str, Any] = {"device": self.device, "duration_s": self.duration_s}
        if self.recovered:
            out["recovered"] = self.recovered
        else:
            out["bookkeeping_s"] = self.bookkeeping_s
        return out

    @classmethod
    def of(cls, stored: dict | None) -> RunInfo | None:
        if not stored:
            return None
        return cls(str(stored.get("device", "")), float(stored.get("duration_s") or 0.0), stored.get("bookkeeping_s"),
                   str(stored.get("recovered", "")))


@dataclass(frozen=True)
class TrialRecord:
    """What lorasweep stored on one Optuna trial, read once, typed."""

    number: int
    state: str  # Optuna's state name: COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    config_hash: str | None = None
    owner: str = ""
    arm: str | None = None
    arm_trial: int | None = None
    main_trial: int | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)
    run: RunInfo | None = None
    failure_reason: str = ""
    mlflow_run_id: str | None = None
    reused_from: int | None = None
    retry_count: int = 0
    retry_of: int | None = None
    infeasible: dict[str, Any] | None = None  # sweep.plan.budget.Verdict.stored() of a config ruled out before training
    alone: bool = False  # a retry that runs with its GPU to itself (its first attempt ran out of memory beside others)

    @classmethod
    def of(cls, frozen) -> TrialRecord:
        """From an Optuna FrozenTrial (or anything with number, state and user_attrs)."""
        a = frozen.user_attrs
        return cls(number=frozen.number, state=frozen.state.name, config_hash=a.get(CONFIG_HASH),
                   owner=str(a.get(OWNER, "")), arm=a.get(ARM), arm_trial=_int(a.get(ARM_TRIAL)),
                   main_trial=_int(a.get(MAIN_TRIAL)), metrics=dict(a.get(METRICS) or {}), run=RunInfo.of(a.get(RUN)),
                   failure_reason=str(a.get(FAILURE_REASON, "") or ""), mlflow_run_id=a.get(MLFLOW_RUN_ID),
                   reused_from=_int(a.get(REUSED_FROM)), retry_count=int(a.get(RETRY_COUNT, 0) or 0),
                   retry_of=_int(a.get(RETRY_OF)), infeasible=a.get(INFEASIBLE), alone=bool(a.get(ALONE, False)))

    @property
    def trained(self) -> bool:
        """Its result came from training, not from a copy of an earlier trial's."""
        return self.reused_from is None


def _int(v) -> int | None:
    return None if v is None else int(v)


# ---------------------------------------------------------------- writers: the attributes each event stores
def claimed(owner: str) -> dict[str, Any]:
    return {OWNER: owner}


def hashed(config_hash: str) -> dict[str, Any]:
    return {CONFIG_HASH: config_hash}


def in_arm(arm: str, arm_trial: int) -> dict[str, Any]:
    return {ARM: arm, ARM_TRIAL: arm_trial}


def mirrors(main_trial: int) -> dict[str, Any]:
    return {MAIN_TRIAL: main_trial}


def run_opened(run_id: str) -> dict[str, Any]:
    return {MLFLOW_RUN_ID: run_id}


def failed(reason: str) -> dict[str, Any]:
    return {FAILURE_REASON: reason}


def outcome(metrics: dict[str, float | None], run: RunInfo | None, failure_reason: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {METRICS: metrics}
    if run is not None:
        out[RUN] = run.stored()
    if failure_reason:
        out[FAILURE_REASON] = failure_reason
    return out


def reused(prior_number: int, metrics: dict[str, float | None], run_id: str | None) -> dict[str, Any]:
    return {METRICS: metrics, REUSED_FROM: prior_number, **({MLFLOW_RUN_ID: run_id} if run_id else {})}


def retry(count: int, of: int, alone: bool = False) -> dict[str, Any]:
    return {RETRY_COUNT: count, RETRY_OF: of, **({ALONE: True} if alone else {})}


def ruled_out(verdict: dict[str, Any]) -> dict[str, Any]:
    """A config ruled out before training: its verdict's stored form (sweep.plan.budget.Verdict.stored)."""
    return {INFEASIBLE: verdict}


def baseline_attr(key: str) -> str:
    return BASELINE_PREFIX + key
