"""Schemas of the groups that steer a sweep but do not change a trial's result.

`sweep`, `tracking` and `cost` are excluded from the config hash: the same trial
config run in another study, with another tracker or price list, hashes the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sweep.config.errors import Problems
from sweep.config.schema import _at_least, _one_of

SAMPLERS = ("tpe", "nsga2", "random", "grid")
PRUNERS = ("none", "median", "hyperband")
PROGRESS = ("auto", "rich", "plain")
TRACKING_BACKENDS = ("mlflow", "none")
PARAM_TYPES = ("int", "float", "categorical", "group")
BACKENDS = ("local", "ray")


@dataclass
class ParamSpec:
    """One search-space dimension, declared in the experiment config."""

    type: str  # int | float | categorical | group (a config-group choice such as quant: [none, nf4])
    low: float | None = None  # int/float: lower bound
    high: float | None = None  # int/float: upper bound
    log: bool = False  # int/float: sample on a log scale
    step: float | None = None  # int/float: grid step
    choices: list[Any] | None = None  # categorical/group: the options
    when: dict[str, Any] | None = None  # sample only when these params/config keys have these values

    def check(self, key: str, p: Problems) -> None:
        _one_of(p, f"{key}.type", self.type, PARAM_TYPES)
        if self.type in ("int", "float"):
            if self.low is None or self.high is None:
                p.add(key, f"{self.type} parameter needs low and high")
            elif self.low > self.high:
                p.add(f"{key}.low", f"must be <= high ({self.high}), got {self.low}")
            elif self.log and self.low <= 0:
                p.add(f"{key}.low", "must be > 0 with log: true")
            if self.choices is not None:
                p.add(f"{key}.choices", f"only for categorical/group parameters, not type {self.type}")
        elif self.type in ("categorical", "group"):
            if not self.choices:
                p.add(f"{key}.choices", "needs a non-empty list of options")


@dataclass
class RayConfig:
    """Where a `sweep.backend=ray` sweep finds its cluster and what each worker actor reserves."""

    address: str = "auto"  # auto (the cluster this machine belongs to) | host:port | ray://host:10001 | local (private Ray here)
    cpus_per_worker: float = 1.0  # CPU-only cluster: CPUs each worker actor reserves (and torch threads it uses)
    namespace: str = "lorasweep"  # Ray namespace of the sweep's actors
    unresponsive_s: float = 120.0  # seconds: a worker actor that answers no health check for this long is killed, its trial failed

    def check(self, p: Problems) -> None:
        a = self.address.strip()
        if not (a in ("auto", "local") or re.fullmatch(r"(ray://)?[^\s:/]+(:\d+)", a) or re.fullmatch(r"(ray://)?\[[0-9a-fA-F:]+\]:\d+", a)):
            p.add("sweep.ray.address", f"must be auto, local, host:port or ray://host:port, got {self.address!r}")
        if self.cpus_per_worker <= 0:
            p.add("sweep.ray.cpus_per_worker", f"must be > 0, got {self.cpus_per_worker}")
        if self.unresponsive_s <= 0:
            p.add("sweep.ray.unresponsive_s", f"must be > 0, got {self.unresponsive_s}")


@dataclass
class SweepConfig:
    GROUP: ClassVar[str] = "sweep"
    study_name: str | None = None  # Optuna study and folder name (letters, digits, . _ -; sweep/names.py); null = the experiment's name
    experiment_name: str | None = None  # MLflow experiment name, may contain / (e.g. team/intent); null = the study name
    n_trials: int = 12  # finished (complete or pruned) trials the study should reach
    storage: str | None = None  # Optuna storage URL; null = sqlite under <output_dir>/<study>/study.db
    output_dir: str = "sweeps"  # per-study folders: study.db, trials/<n>-<hash>/
    workers: Any = "auto"  # auto (one per GPU, or CPU cores / threads_per_worker) or an integer
    workers_per_gpu: int = 1  # workers sharing each visible GPU
    gpus_per_worker: int = 1  # GPUs one worker (one trial) holds: a model larger than one GPU is placed across them
    threads_per_worker: int = 0  # torch threads per CPU worker (0 = cores / workers)
    sampler: str = "tpe"  # tpe | nsga2 | random | grid
    sampler_seed: int = 0  # seed of the sampler
    n_startup_trials: int = 4  # TPE: random trials before modelling
    pruner: str = "none"  # none | median | hyperband (fed by intermediate evaluations)
    pruner_warmup_steps: int = 0  # median: steps before pruning may start
    objectives: list[str] = field(default_factory=lambda: ["eval_accuracy"])  # metric names; directions from sweep/metrics.py
    space: dict[str, ParamSpec] = field(default_factory=dict)  # search space, keyed by config path or group name
    trial_timeout_s: float | None = None  # wall-clock limit of one trial; null = none
    retry_failed: int = 0  # times a trial whose worker died is retried with the same params
    reuse_completed: bool = True  # a config hash that already completed is not retrained
    baseline: bool = True  # measure the base model without an adapter once per (model, quant, data, batch)
    storage_timeout_s: float = 60.0  # sqlite storage: seconds to wait for another process's lock before failing
    heartbeat_interval_s: int = 10  # Optuna heartbeat of running trials
    grace_period_s: int = 60  # a running trial without heartbeat for this long is failed
    max_trainable_params: int | None = None  # budget: configs above it are ruled out before training (sweep.plan.budget)
    memory_budget_mb: Any = None  # budget: configs whose planned memory exceeds it are ruled out before training;
    # MiB (24576), a size (24GiB, 80GB) or a GPU id of sweep/devices.py (l4, a100-80gb); null = none
    group_by: list[str] = field(default_factory=lambda: ["lora.targets"])  # the experiment's question, for reports
    progress: str = "auto"  # auto (live display on a terminal) | rich | plain
    backend: str = "local"  # local (processes on this machine) | ray (actors across a Ray cluster)
    ray: RayConfig = field(default_factory=RayConfig)  # backend=ray: cluster address and actor resources
    recycle_growth_mb: float | None = None  # replace a worker whose memory after a trial grew past its baseline by this
    recycle_after: int | None = None  # replace a worker after this many trials (null = never)

    def __post_init__(self) -> None:
        p = Problems()
        if self.experiment_name is not None:
            from sweep.names import display_name_problem

            problem = display_name_problem("sweep.experiment_name", self.experiment_name)
            if problem:
                p.extend([problem])
        _at_least(p, "sweep.n_trials", self.n_trials, 1)
        if not (self.workers == "auto" or (isinstance(self.workers, int) and not isinstance(self.workers, bool) and self.workers >= 1)):
            p.add("sweep.workers", f"must be auto or a positive integer, got {self.workers!r}")
        _at_least(p, "sweep.workers_per_gpu", self.workers_per_gpu, 1)
        _at_least(p, "sweep.gpus_per_worker", self.gpus_per_worker, 1)
        if self.gpus_per_worker > 1 and self.workers_per_gpu > 1:
            p.add("sweep.gpus_per_worker", "a trial across several GPUs cannot share them with other workers: set "
                  "sweep.workers_per_gpu=1, or sweep.gpus_per_worker=1")
        _at_least(p, "sweep.threads_per_worker", self.threads_per_worker, 0)
        _one_of(p, "sweep.sampler", self.sampler, SAMPLERS)
        _one_of(p, "sweep.pruner", self.pruner, PRUNERS)
        _one_of(p, "sweep.progress", self.progress, PROGRESS)
        _one_of(p, "sweep.backend", self.backend, BACKENDS)
        self.ray.check(p)
        if self.recycle_growth_mb is not None and self.recycle_growth_mb <= 0:
            p.add("sweep.recycle_growth_mb", f"must be > 0 or null, got {self.recycle_growth_mb}")
        _at_least(p, "sweep.recycle_after", self.recycle_after, 1)
        _at_least(p, "sweep.max_trainable_params", self.max_trainable_params, 1)
        from sweep.devices import memory_of

        try:
            memory_of(self.memory_budget_mb)
        except ValueError as exc:
            p.add("sweep.memory_budget_mb", str(exc))
        _at_least(p, "sweep.retry_failed", self.retry_failed, 0)
        _at_least(p, "sweep.heartbeat_interval_s", self.heartbeat_interval_s, 1)
        if self.storage_timeout_s <= 0:
            p.add("sweep.storage_timeout_s", f"must be > 0, got {self.storage_timeout_s}")
        if self.grace_period_s <= self.heartbeat_interval_s:
            p.add("sweep.grace_period_s", f"must exceed sweep.heartbeat_interval_s ({self.heartbeat_interval_s})")
        if self.trial_timeout_s is not None and self.trial_timeout_s <= 0:
            p.add("sweep.trial_timeout_s", f"must be > 0 or null, got {self.trial_timeout_s}")
        if not self.objectives:
            p.add("sweep.objectives", "needs at least one metric name")
        from sweep import metrics

        for i, name in enumerate(self.objectives):
            m = metrics.BY_NAME.get(name)
            if m is None:
                p.add(f"sweep.objectives[{i}]", f"unknown metric {name!r} (use a metric declared in src/sweep/metrics.py, "
                      "e.g. eval_accuracy, trainable_ratio, peak_memory_mb, merged_latency_p50_ms)")
            elif m.direction is metrics.Direction.NONE:
                p.add(f"sweep.objectives[{i}]", f"metric {name!r} has no direction and cannot be optimised")
        for key, spec in self.space.items():
            spec.check(f"sweep.space.{key}", p)
            if self.sampler == "grid" and spec.type in ("int", "float") and spec.step is None:
                p.add(f"sweep.space.{key}.step", "the grid sampler needs a step for int/float parameters")
        p.raise_if_any()


@dataclass
class TrackingConfig:
    GROUP: ClassVar[str] = "tracking"
    backend: str = "mlflow"  # mlflow | none
    tracking_uri: str = "sqlite:///.mlflow/mlflow.db"  # any MLflow tracking URI
    artifact_location: str = ".mlflow/artifacts"  # where new experiments store artifacts (a folder: local stores only; an http(s) server uses its own)
    log_adapter: bool = True  # upload the adapter safetensors as an artifact

    def __post_init__(self) -> None:
        p = Problems()
        _one_of(p, "tracking.backend", self.backend, TRACKING_BACKENDS)
        p.raise_if_any()
