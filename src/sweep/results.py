"""The typed outcome of one trial."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path


class TrialStatus(str, Enum):
    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"
    FAILED = "FAILED"


@dataclass
class TrialResult:
    status: TrialStatus
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None  # one line: the failure or prune reason
    config_hash: str = ""
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # metric -> [(step, value)]
    meta: dict = field(default_factory=dict)  # provenance: versions, git, device, fingerprints
    duration_s: float = 0.0  # wall time of the whole trial (load, train, measure)
    output_dir: str | None = None
    reused_from: int | None = None  # the trial whose result this is a copy of (nothing was trained)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["status"] = self.status.value
        d["metrics"] = self.json_metrics()
        return d

    def json_metrics(self) -> dict[str, float | None]:
        """The metrics with non-finite values as None (JSON and Optuna user attributes hold no NaN)."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in self.metrics.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "TrialResult":
        d = dict(d)
        d["status"] = TrialStatus(d["status"])
        d["metrics"] = {k: (float("nan") if v is None else v) for k, v in (d.get("metrics") or {}).items()}
        d["curves"] = {k: [tuple(x) for x in v] for k, v in (d.get("curves") or {}).items()}
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))


def objective_values(metrics: dict[str, float], objectives: list[str] | tuple[str, ...]) -> list[float] | None:
    """The objective values of a trial in order, or None when one is missing or not finite."""
    values = []
    for name in objectives:
        v = metrics.get(name)
        if v is None or not math.isfinite(float(v)):
            return None
        values.append(float(v))
    return values
