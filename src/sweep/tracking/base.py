"""The tracker interface and its null object (tracking off = a tracker that drops everything).

Callers never branch on whether tracking is on: they get a `NullTracker` (or a
`NullSweepTracking`, see sweep_run.py) that accepts every call and does nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class TrialTrackingSpec:
    """What a worker needs to open a trial's run under the study's parent run (None in a task: tracking off)."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    log_adapter: bool = True  # log the whole trial folder, adapter included (else its top-level files only)


class Tracker(Protocol):
    """One trial's run."""

    run_id: str | None

    def opened(self) -> str | None: ...  # wait until the run is open: its id (None: no run)
    def log_params(self, params: dict) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def set_tags(self, tags: dict[str, str]) -> None: ...
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...
    def log_dict(self, d: dict, name: str) -> None: ...
    def finish(self, status: str) -> None: ...


class NullTracker:
    """Accepts every call of `Tracker` and does nothing."""

    run_id: str | None = None

    def opened(self) -> str | None:
        return None

    def log_params(self, params: dict) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        pass

    def log_dict(self, d: dict, name: str) -> None:
        pass

    def finish(self, status: str) -> None:
        pass


class Reporter(Protocol):
    """Receives intermediate evaluations; returns True when the trial should stop (pruned)."""

    def report(self, step: int, metrics: dict[str, float]) -> bool: ...


class NullReporter:
    def report(self, step: int, metrics: dict[str, float]) -> bool:
        return False


def flatten(d: dict, prefix: str = "") -> dict[str, object]:
    """`{"lora": {"r": 8}}` -> `{"lora.r": 8}` (lists and dicts below the groups kept as values)."""
    out: dict[str, object] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and not prefix:
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out
