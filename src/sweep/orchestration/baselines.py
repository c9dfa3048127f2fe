"""The study's baselines as worker tasks: one per baseline key (base model, quant, data, eval batch), run once by
whichever coordinator meets that key first, recorded in the study (user attribute) and in a file beside it."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from sweep.baseline import baseline_key
from sweep.orchestration.protocol import BaselineTask
from sweep.orchestration.recovery import pid_alive
from sweep.orchestration.study import SweepStudy
from sweep.results import TrialResult, TrialStatus
from sweep.tracking import tags as T

class Baselines:
    def __init__(self, study: SweepStudy, tracking, out_dir: Path, progress, enabled: bool):
        self.study = study
        self.tracking = tracking
        self.out_dir = out_dir
        self.progress = progress
        self.enabled = enabled
        self.seen: set[str] = set()

    def needed(self, tdict: dict, owner: str) -> BaselineTask | None:
        """The baseline task a trial config needs first, or None (off, done, or started by someone)."""
        if not self.enabled:
            return None
        key = baseline_key(tdict)
        if key in self.seen:
            return None
        self.seen.add(key)
        if not self._missing(self.study.baseline(key)):
            return None
        self.study.set_baseline(key, {"status": "RUNNING", "owner": owner})
        tags = {T.ROLE: T.ROLE_BASELINE, T.STUDY: self.study.name, T.BASELINE_KEY: key, T.STATUS: "RUNNING"}
        return BaselineTask(key, tdict, tags, self.tracking.trial_spec)

    @staticmethod
    def _missing(record: dict | None) -> bool:
        """No usable baseline: none yet, a failed one (tried again once per run), or one whose coordinator died."""
        if record is None or record.get("status") == "FAILED":
            return True
        if record.get("status") != "RUNNING":
            return False
        host, _, pid = str(record.get("owner", "")).partition(":")
        return host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid))

    def done(self, task: BaselineTask, result: TrialResult) -> None:
        key = task.baseline_key
        record = {"status": result.status.value, "metrics": result.json_metrics(), "error": result.error,
                  "meaning": result.meta.get("meaning", "")}
        self.study.set_baseline(key, record)
        try:
            folder = self.out_dir / "baselines"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{key}.json").write_text(json.dumps({**record, "meta": result.meta}, indent=2, sort_keys=True))
        except OSError as exc:
            self.progress.message(f"baseline {key}: could not write its file: {exc}")
        if result.status is TrialStatus.COMPLETE:
            acc, lat = result.metrics.get("eval_accuracy"), result.metrics.get("merged_latency_p50_ms")
            self.progress.message(f"baseline {key}: the base model without an adapter scores eval_accuracy={acc:.4g}, "
                                  f"latency {lat:.4g} ms/batch in {result.duration_s:.1f}s")
        else:
            self.progress.message(f"baseline {key} failed: {result.error} (the report will have no baseline for it)")

    def lost(self, task: BaselineTask, reason: str) -> None:
        self.done(task, TrialResult(TrialStatus.FAILED, {}, reason))
