"""A config is trained once per study: a config hash that already completed is reused, and a trial whose config
is training right now (its twin, on any machine) waits for that twin's result instead of training it twice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from sweep.orchestration.protocol import TrialTask
from sweep.orchestration.records import TrialRecord
from sweep.orchestration.recovery import trial_folder
from sweep.orchestration.study import Counts, SweepStudy
from sweep.tracking import tags as T


class Reuse:
    def __init__(self, study: SweepStudy, tracking, out_dir: Path, progress):
        self.study = study
        self.tracking = tracking
        self.out_dir = out_dir
        self.progress = progress
        self.waiting: list[tuple] = []  # (pending-to-be, twin number): the same config is training elsewhere

    def completed(self, h: str, counts: Counts | None = None):
        """The first trial that completed config hash `h` by training (not by reuse), or None. `counts`: the
        study's read for this dispatch (its index), else read now."""
        return (counts if counts is not None else self.study.counts()).completed.get(h)

    def running_twin(self, h: str, number: int, counts: Counts | None = None) -> int | None:
        """Another RUNNING trial (any machine's) training config hash `h`, not itself waiting for one."""
        waiting = {p.number for p, _ in self.waiting}
        for n in (counts if counts is not None else self.study.counts()).running.get(h, ()):
            if n != number and n not in waiting:
                return n
        return None

    def wait(self, pending, twin: int) -> None:
        self.waiting.append((pending, twin))
        self.progress.event(pending.number, "waiting", f"config {pending.task.config_hash} is being trained as trial {twin}")

    def settle_waiting(self, reuse_done: Callable, ready: Callable) -> None:
        """Trials waiting for a twin: reused once it completed (`reuse_done(pending, prior)`); once it ended
        otherwise, the first of them is handed to `ready` to be trained and the others of its config wait for that
        one (a failed twin does not make every waiting copy train the config)."""
        still, trains = [], {}  # config hash -> the waiting trial that trains it now
        for pending, twin in self.waiting:
            h = pending.task.config_hash
            if h in trains:
                still.append((pending, trains[h]))
                continue
            if self.study.trial(twin).state.name == "RUNNING":
                still.append((pending, twin))
                continue
            prior = self.completed(h)
            if prior is not None:
                reuse_done(pending, prior)
            else:
                ready(pending)
                trains[h] = pending.number
        self.waiting = still

    def reuse(self, number: int, prior, task: TrialTask) -> None:
        """Record trial `number` (its task, never handed out) as a copy of `prior`'s result: its user attributes,
        an MLflow run with the task's tags, its trial folder. `prior`: the FrozenTrial that completed the hash."""
        record = TrialRecord.of(prior)
        h = task.config_hash
        tags = {**task.tags, T.STATUS: "COMPLETE", T.REUSED_FROM: str(prior.number),
                T.DEVICE: record.run.device if record.run else ""}
        run_id = self.tracking.record_reuse(tags, task.config, record.metrics)
        self._folder(number, prior, h, task.config)
        self.study.set_reused(number, prior.number, record.metrics, run_id)
        self.progress.event(number, "reused", f"config {h} already completed as trial {prior.number}")

    def _folder(self, number: int, prior, h: str, tdict: dict) -> None:
        """The reused trial's folder: its config, the prior result marked `reused_from`, a link to the prior adapter."""
        from sweep.config.hashing import write_config

        src, dst = trial_folder(self.out_dir, prior.number, h), trial_folder(self.out_dir, number, h)
        try:
            write_config(dst, tdict)
            result = json.loads((src / "result.json").read_text()) if (src / "result.json").is_file() else {}
            result.update({"reused_from": prior.number, "output_dir": str(dst)})
            (dst / "result.json").write_text(json.dumps(result, indent=2, sort_keys=True))
            if (src / "adapter").is_dir() and not (dst / "adapter").exists():
                (dst / "adapter").symlink_to(Path("..") / src.name / "adapter", target_is_directory=True)
        except OSError as exc:  # the copy is a convenience: the result itself is in Optuna and MLflow
            self.progress.message(f"trial {number}: could not write its folder {dst}: {exc}")
