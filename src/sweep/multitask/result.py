"""The typed result of a serving measurement, and the one table of its metrics.

The table plays the part of sweep/metrics.py for the serving run (the trial table feeds
Optuna, the trial reports and the test that every trial metric is produced, so these
live here). Per-task metrics are logged as `<metric>.<study>` (latency also per batch
size: `<metric>.<study>.b<batch>`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from sweep.metrics import Direction, Metric
from sweep.multitask.measure import Correctness, LatencyRow, MixedBatch
from sweep.multitask.memory import Memory
from sweep.multitask.noise import Timing
from sweep.multitask.pricing import Pricing

_MAX, _MIN, _NONE = Direction.MAX, Direction.MIN, Direction.NONE

SERVE_METRICS: tuple[Metric, ...] = (
    Metric("serve_tasks", "tasks", _NONE, "adapters served on the one base (K)"),
    Metric("serve_exact_tasks", "tasks", _MAX, "adapters whose served accuracy and loss equal the recorded ones bit for bit"),
    Metric("served_accuracy", "fraction", _MAX, "per task: eval accuracy with the adapter active on the shared base"),
    Metric("switch_p50_ms", "ms", _MIN, "set_adapter time, median over the timed switches"),
    Metric("switch_p95_ms", "ms", _MIN, "set_adapter time, 95th percentile"),
    Metric("unmerged_p50_ms", "ms/batch", _MIN, "per task and batch size: forward with the adapter active (unmerged), median"),
    Metric("merged_p50_ms", "ms/batch", _MIN, "per task and batch size: forward of the task's merged model, median"),
    Metric("mixed_p50_ms", "ms/batch", _MIN, "one forward over a batch whose rows use different adapters, median"),
    Metric("grouped_p50_ms", "ms/batch", _MIN, "the same rows served task by task (set_adapter + forward each), median"),
    Metric("mixed_max_abs_diff", "logit", _MIN, "max |mixed-batch logit - single-adapter logit| over every row"),
    Metric("memory_base_mb", "MiB", _MIN, "resident memory of one base model (fresh process)"),
    Metric("memory_stack_mb", "MiB", _MIN, "resident memory of one base + K adapters (fresh process)"),
    Metric("memory_merged_mb", "MiB", _MIN, "resident memory of K merged models (fresh process)"),
    Metric("memory_adapter_mb", "MiB", _MIN, "resident memory one adapter adds to the base (mean)"),
    Metric("shared_devices", "devices", _MIN, "always-on devices of the one shared deployment"),
    Metric("merged_devices", "devices", _MIN, "always-on devices of the K merged deployments together"),
    Metric("shared_monthly_usd", "USD/month", _MIN, "serving cost of one base + K adapters"),
    Metric("merged_monthly_usd", "USD/month", _MIN, "serving cost of K merged deployments"),
)
SERVE_BY_NAME = {m.name: m for m in SERVE_METRICS}


@dataclass
class ServedAdapter:
    """Which adapter of a study is served, and where it came from."""

    study: str
    config_hash: str
    how: str  # recommended | given
    trial_number: int | None
    run_id: str | None  # MLflow run of the trial that trained it (linked from the serving run)
    source: str  # MLflow run or trial folder the files came from
    data: str  # data.name of its task
    labels: int  # classifier head width
    lora: str  # method, rank, targets in words


@dataclass
class ServingResult:
    studies: list[str]
    adapters: list[ServedAdapter]
    base: dict  # model name, source, quantization, fingerprint
    device: str  # where it was measured, in words
    threads: int  # torch CPU threads during the timings
    measured_at: str  # UTC date and time
    correctness: list[Correctness]
    switch: Timing
    latency: list[LatencyRow]
    mixed: MixedBatch | None  # None when PEFT does not support it here (see features)
    memory: Memory | None  # None when not measured
    pricing: Pricing
    features: dict[str, str]  # feature -> unsupported / worked around, in words
    recommendation: str = ""
    run_id: str | None = None  # the MLflow run of this measurement
    extra: dict = field(default_factory=dict)

    @property
    def all_exact(self) -> bool:
        return all(c.exact for c in self.correctness)

    def metrics(self) -> dict[str, float]:
        """Flat metric dict for MLflow, names from SERVE_METRICS (per task: `<name>.<study>[.b<batch>]`)."""
        out: dict[str, float] = {"serve_tasks": float(len(self.studies)),
                                 "serve_exact_tasks": float(sum(c.exact for c in self.correctness)),
                                 "switch_p50_ms": self.switch.p50_ms, "switch_p95_ms": self.switch.p95_ms}
        for c in self.correctness:
            out[f"served_accuracy.{c.study}"] = c.served_accuracy
        for row in self.latency:
            out[f"unmerged_p50_ms.{row.study}.b{row.batch}"] = row.unmerged.p50_ms
            out[f"merged_p50_ms.{row.study}.b{row.batch}"] = row.merged.p50_ms
        if self.mixed is not None:
            out.update({"mixed_p50_ms": self.mixed.mixed.p50_ms, "grouped_p50_ms": self.mixed.grouped.p50_ms,
                        "mixed_max_abs_diff": self.mixed.max_abs_diff})
        if self.memory is not None:
            out.update({"memory_base_mb": self.memory.base_mb, "memory_stack_mb": self.memory.stack_mb,
                        "memory_merged_mb": self.memory.merged_mb, "memory_adapter_mb": self.memory.adapter_mb})
        p = self.pricing
        out.update({"shared_devices": float(p.shared_devices), "merged_devices": float(p.merged_devices),
                    "shared_monthly_usd": p.shared_monthly_usd, "merged_monthly_usd": p.merged_monthly_usd})
        undeclared = [k for k in out if k.split(".")[0] not in SERVE_BY_NAME]
        if undeclared:
            raise KeyError(f"undeclared serving metric {undeclared[0]}: declare it in SERVE_METRICS")
        return {k: float(v) for k, v in out.items() if v is not None and math.isfinite(float(v))}

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if self.memory is not None:
            d["memory"].update(adapter_mb=self.memory.adapter_mb, merged_each_mb=self.memory.merged_each_mb)
        d["pricing"]["saving_usd"] = self.pricing.saving_usd
        d["all_exact"] = self.all_exact
        return d
