"""Cost and return on investment of a sweep and of each config, from measured time and latency.

    training cost (USD)         = train_time_s / 3600 x price_per_device_hour x devices held (cost.devices_per_trial,
                                  or each trial's own: its GPUs over the workers sharing them; devices_held)
    inference (USD / 1M req.)   = merged_latency_p50_ms / batch_size_inference x 1e6 / 3.6e6 x price_per_device_hour
    monthly inference (USD)     = inference per 1M x monthly_requests / 1e6
    monthly total (USD)         = monthly inference + this config's training cost / horizon_months
    monthly benefit (USD)       = monthly_benefit, or value_per_accuracy_point_per_month x 100 x (accuracy - baseline)
    one-off cost (USD)          = sweep total training cost (every trial that ran, failed ones included) + engineering_cost
    ROI over the horizon        = (benefit x horizon - cost) / cost, cost = one-off + monthly inference x horizon
    payback (months)            = one-off / (monthly benefit - monthly inference); inf when that is <= 0

The directions of the cost columns are those of the metrics they are computed from
(train_time_s, merged_latency_p50_ms), read from sweep/metrics.py.
"""

from __future__ import annotations

import math
import numpy as np
import pandas as pd

from sweep import metrics as mt
from sweep.config.cost import CostConfig
from sweep.metrics import Direction
from sweep.report.pareto import order_best_first

HOURS_MS = 3.6e6  # milliseconds per hour
PER_MILLION = 1e6

# derived column -> (unit, the measured metric it is proportional to and shares its direction with; None = none)
DERIVED: dict[str, tuple[str, str | None]] = {
    "training_cost_usd": ("USD", "train_time_s"),
    "inference_usd_per_million": ("USD/1M requests", "merged_latency_p50_ms"),
    "monthly_inference_usd": ("USD/month", "merged_latency_p50_ms"),
    "monthly_total_usd": ("USD/month", None),
    "monthly_benefit_usd": ("USD/month", None),
    "net_monthly_usd": ("USD/month", None),
    "roi": ("ratio over the horizon", None),
    "payback_months": ("months", None),
}


def cost_direction(column: str) -> Direction:
    """Direction of a derived cost column: that of the metric it is proportional to (metrics table otherwise)."""
    if column in DERIVED:
        source = DERIVED[column][1]
        if source is None:
            raise ValueError(f"{column} combines several metrics and has no direction of its own")
        return mt.direction(source)
    return mt.direction(column)


# ------------------------------------------------------------------ arithmetic (plain numbers in, numbers out)
def training_cost(train_time_s, cost: CostConfig, devices=None):
    """USD spent training one trial (or a column of them) priced for `devices` devices (`priced_devices`; default
    cost.devices_per_trial, else 1)."""
    if devices is None:
        devices = cost.devices_per_trial if cost.devices_per_trial is not None else 1.0
    return train_time_s / 3600.0 * cost.price_per_device_hour * devices


def priced_devices(frame: pd.DataFrame, cost: CostConfig) -> pd.Series:
    """The devices each trial is priced for: cost.devices_per_trial when set, else what it held (devices_held)."""
    if cost.devices_per_trial is not None:
        return pd.Series(float(cost.devices_per_trial), index=frame.index)
    return devices_held(frame)


def devices_held(frame: pd.DataFrame) -> pd.Series:
    """The devices each trial held: its GPUs (the `gpu` column: CUDA_VISIBLE_DEVICES of its worker) over the
    workers sharing them (`gpu_share`), 1 for a CPU trial or one recorded before shares were."""
    gpu = frame["gpu"] if "gpu" in frame else pd.Series("", index=frame.index)
    share = frame["gpu_share"] if "gpu_share" in frame else pd.Series("", index=frame.index)

    def held(g, s) -> float:
        ids = [x for x in str(g or "").split(",") if x.strip()]
        try:
            n = int(s)
        except (TypeError, ValueError):
            n = 1
        return len(ids) / max(n, 1) if ids else 1.0

    return pd.Series([held(g, s) for g, s in zip(gpu, share)], index=frame.index, dtype=float)


def inference_cost_per_million(latency_ms_per_batch: float, batch_size: float, cost: CostConfig) -> float:
    """USD per million requests served at the measured merged p50 batch latency on one device."""
    return latency_ms_per_batch / batch_size * PER_MILLION / HOURS_MS * cost.price_per_device_hour


def monthly_inference_cost(per_million: float, cost: CostConfig) -> float:
    """USD per month for `cost.monthly_requests` requests."""
    return per_million * cost.monthly_requests / PER_MILLION


def monthly_benefit(accuracy: float, baseline: float, cost: CostConfig) -> float:
    """USD per month: the fixed benefit, or the value of each accuracy point over the baseline."""
    if cost.monthly_benefit is not None:
        return float(cost.monthly_benefit)
    return float(cost.value_per_accuracy_point_per_month) * (accuracy - baseline) * 100.0


def roi(benefit_per_month: float, cost_per_month: float, one_off: float, horizon_months: float) -> float:
    """(benefit - cost) / cost over the horizon; +-inf when nothing is spent but something is gained/lost."""
    spent = one_off + cost_per_month * horizon_months
    gained = benefit_per_month * horizon_months
    if spent == 0:
        return math.inf if gained > 0 else (-math.inf if gained < 0 else math.nan)
    return (gained - spent) / spent


def payback_months(one_off: float, benefit_per_month: float, cost_per_month: float) -> float:
    """Months until the one-off cost is earned back; inf when the net monthly benefit is <= 0."""
    net = benefit_per_month - cost_per_month
    if net <= 0:
        return math.inf
    return one_off / net


# ------------------------------------------------------------------ over a trials frame
def _batch_sizes(frame: pd.DataFrame, cost: CostConfig) -> pd.Series:
    """Requests per measured batch: the configured size, else min(train.eval_batch_size, eval_samples)."""
    if cost.batch_size_inference is not None:
        return pd.Series(float(cost.batch_size_inference), index=frame.index)
    eval_batch = pd.to_numeric(frame.get("train.eval_batch_size", pd.Series(np.nan, index=frame.index)), errors="coerce")
    samples = pd.to_numeric(frame.get("eval_samples", pd.Series(np.nan, index=frame.index)), errors="coerce")
    return eval_batch.where(samples.isna() | (samples >= eval_batch), samples)


def sweep_total_cost(frame: pd.DataFrame, cost: CostConfig) -> tuple[float, int, int]:
    """(USD, trials counted, trials without a known train time): every trial that trained, failed ones included.

    A trial that reused another's result trained nothing and is not counted.
    """
    if frame.empty or "train_time_s" not in frame:
        return 0.0, 0, len(frame)
    reused = frame["reused_from"].notna() if "reused_from" in frame else pd.Series(False, index=frame.index)
    ran = frame[~reused]
    t = pd.to_numeric(ran["train_time_s"], errors="coerce")
    known = t.notna()
    held = priced_devices(ran, cost)
    return (float(sum(training_cost(float(x), cost, float(d)) for x, d in zip(t[known], held[known]))),
            int(known.sum()), int((~known).sum()))


def baseline_of(frame: pd.DataFrame, cost: CostConfig) -> tuple[pd.Series, str]:
    """Each trial's baseline accuracy, and where it comes from: the configured cost.baseline_accuracy, else the
    study's baseline run of the trial's base model without an adapter (sweep/baseline.py). Studies recorded
    before baselines existed fall back on their worst completed trial, and say so."""
    if cost.baseline_accuracy is not None:
        return pd.Series(float(cost.baseline_accuracy), index=frame.index), "cost.baseline_accuracy"
    measured = pd.to_numeric(frame.get("baseline_accuracy", pd.Series(np.nan, index=frame.index)), errors="coerce")
    if measured.notna().any():
        return measured, "the base model without an adapter, measured once in this study"
    done = frame[(frame["status"] == "COMPLETE")] if "status" in frame else frame
    acc = pd.to_numeric(done.get("eval_accuracy", pd.Series(dtype=float)), errors="coerce").dropna()
    if acc.empty:
        return pd.Series(math.nan, index=frame.index), "no completed trial"
    worst = acc.iloc[order_best_first(acc.to_numpy(), mt.direction("eval_accuracy"))[-1]]
    return pd.Series(float(worst), index=frame.index), "the worst completed trial (no baseline run was recorded)"


def add_costs(frame: pd.DataFrame, cost: CostConfig) -> pd.DataFrame:
    """A copy of the trials frame with the per-trial cost and ROI columns (NaN where an input is missing).

    Benefit, ROI and payback are given for COMPLETE trials only (a pruned trial's accuracy is a partial one).
    """
    out = frame.copy()
    nan = pd.Series(np.nan, index=out.index)
    train_s = pd.to_numeric(out.get("train_time_s", nan), errors="coerce")
    latency = pd.to_numeric(out.get("merged_latency_p50_ms", nan), errors="coerce")
    acc = pd.to_numeric(out.get("eval_accuracy", nan), errors="coerce")
    batch = _batch_sizes(out, cost)
    out["training_cost_usd"] = training_cost(train_s, cost, priced_devices(out, cost))
    out["inference_usd_per_million"] = latency / batch * PER_MILLION / HOURS_MS * cost.price_per_device_hour
    out["monthly_inference_usd"] = out["inference_usd_per_million"] * cost.monthly_requests / PER_MILLION
    out["monthly_total_usd"] = out["monthly_inference_usd"] + out["training_cost_usd"] / cost.horizon_months
    baselines, _ = baseline_of(out, cost)
    one_off = sweep_total_cost(out, cost)[0] + cost.engineering_cost
    complete = (out["status"] == "COMPLETE") if "status" in out else pd.Series(True, index=out.index)
    out["monthly_benefit_usd"] = [monthly_benefit(a, b, cost) if ok and math.isfinite(a) and math.isfinite(b)
                                  else math.nan for a, b, ok in zip(acc, baselines, complete)]
    out["net_monthly_usd"] = out["monthly_benefit_usd"] - out["monthly_inference_usd"]
    out["roi"] = [roi(b, c, one_off, cost.horizon_months) if math.isfinite(b) and math.isfinite(c) else math.nan
                  for b, c in zip(out["monthly_benefit_usd"], out["monthly_inference_usd"])]
    out["payback_months"] = [payback_months(one_off, b, c) if math.isfinite(b) and math.isfinite(c) else math.nan
                             for b, c in zip(out["monthly_benefit_usd"], out["monthly_inference_usd"])]
    return out
