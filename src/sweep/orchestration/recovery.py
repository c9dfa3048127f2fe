"""Recovery: trials whose worker or coordinator died, retries, and MLflow made to agree with Optuna.

Optuna is the source of truth for a trial's state. A trial left RUNNING by a dead
coordinator on this host (its pid is gone) or anywhere (its heartbeat is stale) is
settled: if its worker had already written a result to the trial folder, that result is
told (nothing that finished is lost); otherwise it is failed with the reason, its folder
is marked incomplete, and it is retried once if configured. `reconcile` then gives every
MLflow child run the terminal status of its Optuna trial.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
from pathlib import Path

from sweep.orchestration.records import RunInfo, TrialRecord
from sweep.orchestration.study import SweepStudy
from sweep.results import TrialResult, TrialStatus, objective_values
from sweep.tracking.sweep_run import TrialOutcome

INCOMPLETE = "INCOMPLETE"  # file written into a trial folder whose trial never finished


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def trial_folder(out_dir: Path, number: int, config_hash: str) -> Path:
    return out_dir / "trials" / f"{number:04d}-{config_hash}"


class Recovery:
    def __init__(self, study: SweepStudy, tracking, *, retry_failed: int, objectives: list[str], out_dir: Path,
                 log=print):
        self.study = study
        self.tracking = tracking
        self.retry_failed = retry_failed
        self.objectives = list(objectives)
        self.out_dir = out_dir
        self.log = log

    # ---------------------------------------------------------------- one trial
    def trial_lost(self, number: int, reason: str) -> None:
        """The trial's worker died, hung or was stopped: fail it, close its run, mark its folder, retry it."""
        self.study.fail(number, reason)
        self.settled_failed(self.study.trial(number), reason)

    def settled_failed(self, frozen, reason: str) -> None:
        """A trial that is now FAIL in Optuna (told here, or by Optuna's heartbeat check)."""
        record = TrialRecord.of(frozen)
        self.tracking.close_trial_run(record.mlflow_run_id, reason)
        self.mark_incomplete(frozen, reason)
        if record.retry_count < self.retry_failed and frozen.params and record.infeasible is None:
            self.study.enqueue_retry(frozen.params, record.retry_count + 1, frozen.number)

    def mark_incomplete(self, frozen, reason: str) -> None:
        h = TrialRecord.of(frozen).config_hash
        folder = trial_folder(self.out_dir, frozen.number, h) if h else None
        if folder is not None and folder.is_dir() and not (folder / "result.json").is_file():
            try:
                (folder / INCOMPLETE).write_text(reason + "\n")
            except OSError as exc:  # the disk that failed the trial may still be full
                self.log(f"trial {frozen.number}: could not mark {folder} incomplete: {exc}")

    def on_stale(self, _study, frozen) -> None:
        """Optuna's callback: it failed a trial whose heartbeat went stale (its machine or coordinator died)."""
        self.settled_failed(frozen, "heartbeat lost: its worker or machine died")

    # ---------------------------------------------------------------- at start
    def settle_orphans(self, grace_s: float) -> int:
        """Settle trials left RUNNING by a dead coordinator on this host, trials whose coordinator died before it
        could even claim them (no owner after `grace_s`), then stale ones anywhere. Returns how many were settled
        here."""
        host = socket.gethostname()
        now = datetime.datetime.now()
        n = 0
        for t in self.study.trials("RUNNING"):
            owner = TrialRecord.of(t).owner
            o_host, _, o_pid = owner.partition(":")
            if o_host == host and o_pid.isdigit() and not pid_alive(int(o_pid)):
                n += 1
                if not self._salvage(t):
                    self.trial_lost(t.number, "its sweep process died (killed) before the trial finished")
            elif not owner and t.datetime_start and (now - t.datetime_start).total_seconds() > grace_s:
                n += 1
                self.trial_lost(t.number, "its sweep process died while starting it")
        self.study.fail_stale()
        return n

    def _salvage(self, frozen) -> bool:
        """A trial whose result reached its folder before the coordinator died: tell that result."""
        import optuna

        if TrialRecord.of(frozen).infeasible is not None:  # it died while ruling the config out: finish that
            self.study.study.tell(frozen.number, state=optuna.trial.TrialState.PRUNED)
            self.log(f"trial {frozen.number}: ruled out before training (its coordinator died while recording it)")
            return True
        h = TrialRecord.of(frozen).config_hash
        path = trial_folder(self.out_dir, frozen.number, h) / "result.json" if h else None
        if path is None or not path.is_file():
            return False
        try:
            result = TrialResult.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            return False
        values = objective_values(result.metrics, self.objectives)
        self.study.set_outcome(frozen.number, result.json_metrics(),
                               RunInfo(str(result.meta.get("device", "")), result.duration_s,
                                       recovered="result.json written before the coordinator died"))
        if result.status is TrialStatus.COMPLETE and values is not None:
            self.study.study.tell(frozen.number, values)
        elif result.status is TrialStatus.PRUNED:
            self.study.study.tell(frozen.number, state=optuna.trial.TrialState.PRUNED)
        else:
            return False
        self.log(f"trial {frozen.number}: recovered its {result.status.value} result from {path}")
        return True

    # ---------------------------------------------------------------- MLflow
    def reconcile(self) -> int:
        """Every MLflow child run of the study gets the terminal status of its Optuna trial."""
        trials = {r.number: TrialOutcome(r.state, r.failure_reason, r.metrics, r.infeasible is not None) for r in self.study.records()
                  if r.state != "RUNNING"}
        return self.tracking.reconcile(trials)
