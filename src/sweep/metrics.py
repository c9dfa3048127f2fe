"""The one table of metrics: name, unit, direction, meaning, and how noisy it is.

Optuna directions, the Pareto code, the reports, reproduce and the MLflow logging all read
this table; a metric that is not declared here cannot be an objective. The noise column
decides when the report may call two values different:

  exact     counts and sizes: any difference is real
  binomial  a proportion on eval_samples examples: the 95% Wilson interval
  interval  measured with its own 95% interval, logged as <name>_ci_low / <name>_ci_high
  relative  varies from run to run: a difference within `rel_noise` of the larger value is noise
            (the tolerances below come from benchmarks/metric_noise.py: repeated identical trials)
  none      never compared

`interval` metrics also carry a `rel_noise` floor: drift between two trials that their own
intervals do not see (another process on the machine, the CPU's clock).
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


class Noise(str, Enum):
    EXACT = "exact"
    BINOMIAL = "binomial"
    INTERVAL = "interval"
    RELATIVE = "relative"
    NONE = "none"


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    direction: Direction
    description: str
    reproducible: bool = False  # a rerun of the same config on the same kind of device gives it again (CPU: exactly)
    noise: Noise = Noise.EXACT  # how two values of it are compared (see the module docstring)
    rel_noise: float = 0.0  # relative: differences below this share of the larger value are noise


_MAX, _MIN, _NONE = Direction.MAX, Direction.MIN, Direction.NONE
TIMING_NOISE = 0.10  # run-to-run spread of wall-clock figures on a shared 2-core CPU (benchmarks/metric_noise.py)
# spread of the CPU resident-memory peak between configs that allocate the same: 12.9% over 5 identical MiniLM
# trials (2026-11-23); on SmolLM2 (2026-11-24) 26% between two q,v r=2 configs in one worker (1811 vs 2439 MiB,
# llm_qv_vs_all) and 5% between two runs of one config (2508 vs 2649 MiB). GPU allocator peaks repeat exactly.
MEMORY_NOISE = 0.30

METRICS: tuple[Metric, ...] = (
    Metric("eval_accuracy", "fraction", _MAX, "classification: argmax accuracy; causal LM: exact match of the greedy "
           "answer after normalisation (lower case, punctuation and articles removed)", reproducible=True,
           noise=Noise.BINOMIAL),
    Metric("eval_loss", "nats/token", _MIN, "mean cross-entropy on the eval split", reproducible=True, noise=Noise.INTERVAL),
    Metric("eval_samples", "examples", _NONE, "eval-set size (for binomial confidence intervals)", reproducible=True),
    Metric("trainable_params", "params", _MIN, "parameters with requires_grad (adapter plus any trained head)", reproducible=True),
    Metric("adapter_params", "params", _MIN, "LoRA/DoRA/AdaLoRA parameters only (no head)", reproducible=True),
    Metric("total_params", "params", _NONE, "all parameters of the adapted model (4-bit weights counted as stored elements x2)",
           reproducible=True),
    Metric("trainable_ratio", "fraction", _MIN, "trainable_params / total_params"),
    Metric("adapter_size_mb", "MiB", _MIN, "size of the saved adapter safetensors file"),
    Metric("train_time_s", "s", _MIN, "wall time of the optimizer steps (evaluations excluded)", noise=Noise.RELATIVE,
           rel_noise=TIMING_NOISE),
    Metric("eval_time_s", "s", _MIN, "wall time of every evaluation of the trial (intermediate and final)",
           noise=Noise.RELATIVE, rel_noise=TIMING_NOISE),
    Metric("train_steps", "steps", _NONE, "optimizer steps taken"),
    Metric("train_samples_per_s", "samples/s", _MAX, "training throughput in examples, optimizer steps only",
           noise=Noise.RELATIVE, rel_noise=TIMING_NOISE),
    Metric("train_tokens_per_s", "tokens/s", _MAX, "training throughput in non-padding tokens, optimizer steps only",
           noise=Noise.RELATIVE, rel_noise=TIMING_NOISE),
    Metric("train_share", "fraction", _NONE, "share of the trial's wall time spent in the optimizer steps", noise=Noise.NONE),
    Metric("train_loss", "nats/token", _MIN, "mean training loss over the last logging window", reproducible=True,
           noise=Noise.NONE),
    Metric("weights_mb", "MiB", _MIN, "the adapted model's weights as stored: parameters and buffers (tied ones once), "
           "4-bit weights packed, with their quantization state", reproducible=True),
    Metric("peak_memory_mb", "MiB", _MIN, "peak during training, weights included, loading spike excluded; GPU: "
           "torch.cuda.max_memory_allocated; CPU: resident memory added by the trial", noise=Noise.RELATIVE,
           rel_noise=MEMORY_NOISE),
    Metric("peak_reserved_mb", "MiB", _MIN, "GPU: torch.cuda.max_memory_reserved; CPU: peak resident set size of the process",
           noise=Noise.RELATIVE, rel_noise=MEMORY_NOISE),
    Metric("predicted_peak_memory_mb", "MiB", _MIN, "sweep.plan's prediction of peak_memory_mb from the config alone, "
           "for the trial's device: the allocator peak (weights, adapter, gradients, optimizer state, activations, "
           "cuBLAS workspace); judged against the measured peak on GPU only (CPU measures resident-memory growth)",
           reproducible=True),
    Metric("latency_p50_ms", "ms/batch", _MIN, "inference latency per eval batch, adapter unmerged, median",
           noise=Noise.INTERVAL, rel_noise=TIMING_NOISE),
    Metric("latency_p95_ms", "ms/batch", _MIN, "inference latency per eval batch, adapter unmerged, 95th percentile",
           noise=Noise.NONE),
    Metric("merged_latency_p50_ms", "ms/batch", _MIN, "inference latency per eval batch of the merged model, median: the "
           "base model's, measured once per (model, quant, batch) in a study (a merged adapter adds no compute)",
           noise=Noise.INTERVAL, rel_noise=TIMING_NOISE),
    Metric("merged_latency_p95_ms", "ms/batch", _MIN, "the same, 95th percentile", noise=Noise.NONE),
    Metric("merge_max_abs_diff", "logit", _MIN, "max |logits(unmerged) - logits(merged)| on one eval batch", noise=Noise.NONE),
    Metric("generation_tokens_per_s", "tokens/s", _MAX, "causal LM: greedy generation throughput on one eval batch, "
           "adapter unmerged", noise=Noise.RELATIVE, rel_noise=TIMING_NOISE),
    Metric("latency_per_token_ms", "ms/token", _MIN, "causal LM: greedy decoding of one request (batch 1, "
           "data.max_new_tokens forced, prefill included), ms per generated token, adapter unmerged, median",
           noise=Noise.INTERVAL, rel_noise=TIMING_NOISE),
    Metric("merged_latency_per_token_ms", "ms/token", _MIN, "causal LM: the same for the merged model: the base model's, "
           "measured once per (model, quant) in a study", noise=Noise.INTERVAL, rel_noise=TIMING_NOISE),
)

BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}
REPRODUCIBLE: tuple[str, ...] = tuple(m.name for m in METRICS if m.reproducible)
CI_LOW, CI_HIGH = "_ci_low", "_ci_high"  # suffixes of an interval metric's bounds


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


def interval_names(name: str) -> tuple[str, str]:
    """The metric names of an interval metric's 95% bounds."""
    return name + CI_LOW, name + CI_HIGH
