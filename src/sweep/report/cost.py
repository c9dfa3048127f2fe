"""Cost and return on investment of a sweep and of each config, from measured time and latency.

    training cost (USD)         = train_time_s / 3600 x price_per_device_hour x devices_per_trial
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
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sweep import metrics as mt
from sweep.config.cost import CostConfig
from sweep.metrics import Direction
from sweep.report.pareto import frontier_mask, order_best_first
from sweep.report.stats import within_noise

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
def training_cost(train_time_s: float, cost: CostConfig) -> float:
    """USD spent training one trial."""
    return train_time_s / 3600.0 * cost.price_per_device_hour * cost.devices_per_trial


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
    return float(sum(training_cost(float(x), cost) for x in t[known])), int(known.sum()), int((~known).sum())


def baseline_of(frame: pd.DataFrame, cost: CostConfig) -> tuple[float, str]:
    """The baseline accuracy and where it came from (configured, or the worst completed trial)."""
    if cost.baseline_accuracy is not None:
        return float(cost.baseline_accuracy), "cost.baseline_accuracy"
    done = frame[(frame["status"] == "COMPLETE")] if "status" in frame else frame
    acc = pd.to_numeric(done.get("eval_accuracy", pd.Series(dtype=float)), errors="coerce").dropna()
    if acc.empty:
        return math.nan, "no completed trial"
    worst = acc.iloc[order_best_first(acc.to_numpy(), mt.direction("eval_accuracy"))[-1]]
    return float(worst), "the worst completed trial"


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
    out["training_cost_usd"] = train_s / 3600.0 * cost.price_per_device_hour * cost.devices_per_trial
    out["inference_usd_per_million"] = latency / batch * PER_MILLION / HOURS_MS * cost.price_per_device_hour
    out["monthly_inference_usd"] = out["inference_usd_per_million"] * cost.monthly_requests / PER_MILLION
    out["monthly_total_usd"] = out["monthly_inference_usd"] + out["training_cost_usd"] / cost.horizon_months
    baseline, _ = baseline_of(out, cost)
    one_off = sweep_total_cost(out, cost)[0] + cost.engineering_cost
    complete = (out["status"] == "COMPLETE") if "status" in out else pd.Series(True, index=out.index)
    out["monthly_benefit_usd"] = [monthly_benefit(a, baseline, cost) if ok and math.isfinite(a) and math.isfinite(baseline)
                                  else math.nan for a, ok in zip(acc, complete)]
    out["net_monthly_usd"] = out["monthly_benefit_usd"] - out["monthly_inference_usd"]
    out["roi"] = [roi(b, c, one_off, cost.horizon_months) if math.isfinite(b) and math.isfinite(c) else math.nan
                  for b, c in zip(out["monthly_benefit_usd"], out["monthly_inference_usd"])]
    out["payback_months"] = [payback_months(one_off, b, c) if math.isfinite(b) and math.isfinite(c) else math.nan
                             for b, c in zip(out["monthly_benefit_usd"], out["monthly_inference_usd"])]
    return out


# ------------------------------------------------------------------ recommendation
@dataclass
class Recommendation:
    best: pd.Series | None  # the config point with the best accuracy
    chosen: pd.Series | None  # the recommended config point
    frontier_metrics: list[str]  # objectives the Pareto frontier was taken over
    candidates: pd.DataFrame  # frontier points within tolerance, cheapest first
    text: str  # the reasoning in words


def money(x: float) -> str:
    """USD amount as text: cents, or two significant digits below a cent."""
    if not math.isfinite(x):
        return "n/a"
    return f"${x:,.2f}" if abs(x) >= 0.01 or x == 0 else f"${x:.2g}"


def _months(x: float) -> str:
    if math.isinf(x):
        return "never (net monthly benefit <= 0)"
    return "n/a" if math.isnan(x) else (f"{x:.1f} months" if x >= 0.1 else f"{x:.2g} months")


def _label(point: pd.Series) -> str:
    return f"{point['trials']} [{point.get('config_hashes', point['config_hash'])}]"


def recommend(points: pd.DataFrame, cost: CostConfig, objectives: list[str], one_off: float) -> Recommendation:
    """The cheapest Pareto config whose accuracy is within `cost.tolerance_points` of the best.

    `points` are config points (seeds folded, see stats.config_points) carrying the cost columns of add_costs.
    The frontier is taken over accuracy, the study objectives, merged latency, training time and trainable
    parameters (those measured for every point), directions from sweep/metrics.py; "cheapest" is the lowest
    monthly total cost, ties broken by the direction of trainable_params.
    """
    acc_dir = mt.direction("eval_accuracy")
    pts = points[points["eval_accuracy"].notna()] if "eval_accuracy" in points else points.iloc[0:0]
    if pts.empty:
        return Recommendation(None, None, [], pts, "No completed trial has an eval_accuracy: nothing to recommend.")
    wanted = ["eval_accuracy", *objectives, "merged_latency_p50_ms", "train_time_s", "trainable_params"]
    dims = [m for m in dict.fromkeys(wanted) if m in pts and mt.direction(m) is not Direction.NONE and pts[m].notna().all()]
    on_front = frontier_mask(pts, dims)
    front = pts[on_front]

    # best: highest accuracy (by its direction), ties -> cheaper monthly total
    tie_cost = pts["monthly_total_usd"].fillna(np.inf).to_numpy() if "monthly_total_usd" in pts else np.zeros(len(pts))
    acc_sorted = order_best_first(pts["eval_accuracy"].to_numpy(dtype=float), acc_dir)
    best_acc = float(pts["eval_accuracy"].iloc[acc_sorted[0]])
    tied = [i for i in acc_sorted if float(pts["eval_accuracy"].iloc[i]) == best_acc]
    best = pts.iloc[min(tied, key=lambda i: tie_cost[i])]

    gap_points = (np.abs(front["eval_accuracy"].to_numpy(dtype=float) - best_acc) * 100.0)
    close = front[gap_points <= cost.tolerance_points + 1e-12]
    params_dir = mt.direction("trainable_params")
    key_cost = close["monthly_total_usd"].fillna(np.inf).to_numpy() if "monthly_total_usd" in close else np.zeros(len(close))
    key_params = close["trainable_params"].to_numpy(dtype=float) if "trainable_params" in close else np.zeros(len(close))
    key_params = np.where(np.isnan(key_params), np.inf, -key_params if params_dir is Direction.MAX else key_params)
    order = np.lexsort((key_params, key_cost))
    candidates = close.iloc[order]
    chosen = candidates.iloc[0]

    text = _reasoning(best, chosen, cost, dims, one_off, within_noise(best["eval_accuracy"], best.get("eval_n", np.nan),
                                                                      chosen["eval_accuracy"]))
    return Recommendation(best, chosen, dims, candidates, text)


def _reasoning(best: pd.Series, chosen: pd.Series, cost: CostConfig, dims: list[str], one_off: float, in_noise: bool) -> str:
    gap = abs(float(best["eval_accuracy"]) - float(chosen["eval_accuracy"])) * 100.0
    b_cost, c_cost = float(best.get("monthly_total_usd", math.nan)), float(chosen.get("monthly_total_usd", math.nan))
    lines = [f"Best accuracy: {_label(best)} with eval_accuracy {best['eval_accuracy']:.4f} "
             f"(monthly total cost {money(b_cost)}, {best.get('trainable_params', math.nan):,.0f} trainable params)."]
    if chosen.name == best.name:
        lines.append(f"Recommended: the same config, {_label(chosen)}: no Pareto config within {_points(cost.tolerance_points)} "
                     "of it is cheaper.")
    else:
        saving = b_cost - c_cost
        share = f" ({saving / b_cost:.0%} less)" if math.isfinite(saving) and b_cost > 0 else ""
        lines.append(f"Recommended: {_label(chosen)} with eval_accuracy {chosen['eval_accuracy']:.4f}, {gap:.2f} points below the "
                     f"best (tolerance {_points(cost.tolerance_points)}); it is the cheapest Pareto config within that tolerance "
                     f"at {money(c_cost)} per month, saving {money(saving)} per month{share}, with "
                     f"{chosen.get('trainable_params', math.nan):,.0f} trainable params.")
        if math.isfinite(float(best.get("ci_low", math.nan))):
            lines.append(f"The gap of {gap:.2f} points is {'within' if in_noise else 'outside'} the 95% Wilson interval of the "
                         f"best accuracy [{best['ci_low']:.4f}, {best['ci_high']:.4f}] (n={best['eval_n']:.0f}): "
                         + ("the two are statistically indistinguishable on this eval set."
                            if in_noise else "the best is measurably more accurate; the saving buys a real accuracy loss."))
        else:
            lines.append("No eval_samples were recorded, so whether the gap is noise cannot be said.")
    lines.append(f"On {cost.hardware} at {money(cost.price_per_device_hour)}/device-hour and {cost.monthly_requests:,.0f} requests/month "
                 f"over {cost.horizon_months:g} months (one-off cost {money(one_off)} = sweep training + engineering): "
                 f"ROI {_ratio(chosen.get('roi', math.nan))}, payback {_months(float(chosen.get('payback_months', math.nan)))}.")
    lines.append("Pareto frontier taken over: " + ", ".join(f"{m} ({mt.direction(m).value})" for m in dims) + ".")
    return " ".join(lines)


def _points(x: float) -> str:
    return f"{x:g} accuracy point" + ("" if x == 1 else "s")


def _ratio(x: float) -> str:
    x = float(x)
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "unbounded (nothing spent)" if x > 0 else "-inf"
    return f"{x:+.0%}"
