"""The one table of metrics: name, unit, direction, meaning.

Optuna directions, the Pareto code, the reports and the MLflow logging all read
this table; a metric that is not declared here cannot be an objective.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Direction(str, Enum):
    """Which way is better for a metric."""

    MAX = "max"
    MIN = "min"
    NONE = "none"  # informational only; never an objective

    @property
    def optuna(self) -> str:
        if self is Direction.NONE:
            raise ValueError("a metric with no direction cannot be an objective")
        return "maximize" if self is Direction.MAX else "minimize"


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    direction: Direction
    description: str


_MAX, _MIN, _NONE = Direction.MAX, Direction.MIN, Direction.NONE

METRICS: tuple[Metric, ...] = (
    Metric("eval_accuracy", "fraction", _MAX, "classification: argmax accuracy; causal LM: exact match of the greedy answer after normalisation (lower case, punctuation and articles removed)"),
    Metric("eval_loss", "nats/token", _MIN, "mean cross-entropy on the eval split"),
    Metric("eval_samples", "examples", _NONE, "eval-set size (for binomial confidence intervals)"),
    Metric("trainable_params", "params", _MIN, "parameters with requires_grad (adapter plus any trained head)"),
    Metric("adapter_params", "params", _MIN, "LoRA/DoRA/AdaLoRA parameters only (no head)"),
    Metric("total_params", "params", _NONE, "all parameters of the adapted model (4-bit weights counted as stored elements x2)"),
    Metric("trainable_ratio", "fraction", _MIN, "trainable_params / total_params"),
    Metric("adapter_size_mb", "MiB", _MIN, "size of the saved adapter safetensors file"),
    Metric("train_time_s", "s", _MIN, "wall time of the training loop (evaluations included)"),
    Metric("train_steps", "steps", _NONE, "optimizer steps taken"),
    Metric("train_samples_per_s", "samples/s", _MAX, "training throughput in examples"),
    Metric("train_tokens_per_s", "tokens/s", _MAX, "training throughput in non-padding tokens"),
    Metric("train_loss", "nats/token", _MIN, "mean training loss over the last logging window"),
    Metric("peak_memory_mb", "MiB", _MIN, "peak during training, weights included, loading spike excluded; GPU: torch.cuda.max_memory_allocated; CPU: resident memory added by the trial"),
    Metric("peak_reserved_mb", "MiB", _MIN, "GPU: torch.cuda.max_memory_reserved; CPU: peak resident set size of the process"),
    Metric("latency_p50_ms", "ms/batch", _MIN, "inference latency per eval batch, adapter unmerged, median"),
    Metric("latency_p95_ms", "ms/batch", _MIN, "inference latency per eval batch, adapter unmerged, 95th percentile"),
    Metric("merged_latency_p50_ms", "ms/batch", _MIN, "inference latency per eval batch after merge_and_unload, median"),
    Metric("merged_latency_p95_ms", "ms/batch", _MIN, "inference latency per eval batch after merge_and_unload, 95th percentile"),
    Metric("merge_max_abs_diff", "logit", _MIN, "max |logits(unmerged) - logits(merged)| on one eval batch"),
    Metric("generation_tokens_per_s", "tokens/s", _MAX, "causal LM: greedy generation throughput"),
    Metric("latency_per_token_ms", "ms/token", _MIN, "causal LM: greedy decoding of one request (batch 1, data.max_new_tokens forced, prefill included), ms per generated token, adapter unmerged, median"),
    Metric("merged_latency_per_token_ms", "ms/token", _MIN, "causal LM: the same after merge_and_unload"),
)

BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}


def get(name: str) -> Metric:
    """The declared metric `name`, or a one-line error listing the known names."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(
            f"unknown metric {name!r}: declare it in sweep/metrics.py or use one of {sorted(BY_NAME)}"
        ) from None


def direction(name: str) -> Direction:
    return get(name).direction


def objective_directions(names: list[str] | tuple[str, ...]) -> list[str]:
    """Optuna direction strings for objective metrics, in order."""
    out = []
    for n in names:
        m = get(n)
        if m.direction is Direction.NONE:
            raise ValueError(f"sweep.objectives: metric {n!r} has no direction and cannot be optimised")
        out.append(m.direction.optuna)
    return out
