"""The recommendation: which config to ship, and why, claiming no difference that the noise could explain.

Best accuracy first; then the Pareto configs within `cost.tolerance_points` of it. One of them
is recommended instead of the best only when it is cheaper by more than the noise of what its
cost is computed from (training time: `rel_noise` of train_time_s; serving: the merged
latency's interval); otherwise the text says the configs are indistinguishable in cost and
the best is recommended. Every "saves", "faster", "smaller" in the text, and whether the
accuracy given up is noise, passes `sweep.noise.beyond_noise`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sweep import metrics as mt
from sweep.config.cost import CostConfig
from sweep.metrics import Direction
from sweep.noise import beyond_noise
from sweep.report.pareto import frontier_mask, order_best_first
from sweep.report.stats import accuracy_gap_interval, within_noise


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


def _ci(point: pd.Series, name: str) -> tuple[float, float]:
    lo, hi = mt.interval_names(name)
    return float(point.get(lo, math.nan)), float(point.get(hi, math.nan))


def differs(name: str, a: pd.Series, b: pd.Series) -> bool:
    """Whether two config points differ on metric `name` beyond its noise."""
    va, vb = float(a.get(name, math.nan)), float(b.get(name, math.nan))
    return beyond_noise(name, va, vb, _ci(a, name), _ci(b, name), a.get("eval_n"), b.get("eval_n"))


def cheaper_beyond_noise(a: pd.Series, b: pd.Series) -> bool:
    """`a` costs less per month than `b`, and a cost driver that favours it (training time, merged latency)
    differs beyond its noise."""
    if not float(a.get("monthly_total_usd", math.nan)) < float(b.get("monthly_total_usd", math.nan)):
        return False
    drivers = [m for m in ("train_time_s", "merged_latency_p50_ms") if float(a.get(m, math.nan)) < float(b.get(m, math.nan))]
    return any(differs(m, a, b) for m in drivers)


def recommend(points: pd.DataFrame, cost: CostConfig, objectives: list[str], one_off: float) -> Recommendation:
    """The best config, or a Pareto config within `cost.tolerance_points` of it that is cheaper beyond the noise."""
    acc_dir = mt.direction("eval_accuracy")
    pts = points[points["eval_accuracy"].notna()] if "eval_accuracy" in points else points.iloc[0:0]
    if pts.empty:
        return Recommendation(None, None, [], pts, "No completed trial has an eval_accuracy: nothing to recommend.")
    wanted = ["eval_accuracy", *objectives, "merged_latency_p50_ms", "train_time_s", "trainable_params"]
    dims = [m for m in dict.fromkeys(wanted) if m in pts and mt.direction(m) is not Direction.NONE and pts[m].notna().all()]
    front = pts[frontier_mask(pts, dims)]

    # best: highest accuracy (by its direction), ties -> cheaper monthly total
    tie_cost = pts["monthly_total_usd"].fillna(np.inf).to_numpy() if "monthly_total_usd" in pts else np.zeros(len(pts))
    acc_sorted = order_best_first(pts["eval_accuracy"].to_numpy(dtype=float), acc_dir)
    best_acc = float(pts["eval_accuracy"].iloc[acc_sorted[0]])
    tied = [i for i in acc_sorted if float(pts["eval_accuracy"].iloc[i]) == best_acc]
    best = pts.iloc[min(tied, key=lambda i: tie_cost[i])]

    gap_points = np.abs(front["eval_accuracy"].to_numpy(dtype=float) - best_acc) * 100.0
    close = front[gap_points <= cost.tolerance_points + 1e-12]
    key_cost = close["monthly_total_usd"].fillna(np.inf).to_numpy() if "monthly_total_usd" in close else np.zeros(len(close))
    params_dir = mt.direction("trainable_params")
    key_params = close["trainable_params"].to_numpy(dtype=float) if "trainable_params" in close else np.zeros(len(close))
    key_params = np.where(np.isnan(key_params), np.inf, -key_params if params_dir is Direction.MAX else key_params)
    candidates = close.iloc[np.lexsort((key_params, key_cost))]
    chosen = next((c for _, c in candidates.iterrows() if cheaper_beyond_noise(c, best)), best)
    return Recommendation(best, chosen, dims, candidates, _reasoning(best, chosen, candidates, cost, dims, one_off))


def _label(point: pd.Series) -> str:
    return f"{point['trials']} [{point.get('config_hashes', point['config_hash'])}]"


def _reasoning(best: pd.Series, chosen: pd.Series, candidates: pd.DataFrame, cost: CostConfig, dims: list[str],
               one_off: float) -> str:
    b_cost, c_cost = float(best.get("monthly_total_usd", math.nan)), float(chosen.get("monthly_total_usd", math.nan))
    lines = [f"Best accuracy: {_label(best)} with eval_accuracy {best['eval_accuracy']:.4f} "
             f"(monthly total cost {money(b_cost)}, {best.get('trainable_params', math.nan):,.0f} trainable params)."]
    if chosen.name == best.name:
        others = [c for _, c in candidates.iterrows() if c.name != best.name]
        tied = [c for c in others if float(c.get("monthly_total_usd", math.nan)) < b_cost]
        if tied:
            lines.append(f"Recommended: the same config. {', '.join(_label(c) for c in tied)} "
                         f"{'is' if len(tied) == 1 else 'are'} within {_points(cost.tolerance_points)} and nominally cheaper, "
                         "but by less than the noise of training time and latency: the configs are indistinguishable in cost.")
        else:
            lines.append(f"Recommended: the same config: no Pareto config within {_points(cost.tolerance_points)} of it is "
                         "cheaper.")
    else:
        gap = abs(float(best["eval_accuracy"]) - float(chosen["eval_accuracy"])) * 100.0
        saving = b_cost - c_cost
        share = f" ({saving / b_cost:.0%} less)" if math.isfinite(saving) and b_cost > 0 else ""
        lines.append(f"Recommended: {_label(chosen)} with eval_accuracy {chosen['eval_accuracy']:.4f}, {gap:.2f} points below the "
                     f"best (tolerance {_points(cost.tolerance_points)}); it is cheaper beyond the noise at {money(c_cost)} per "
                     f"month, saving {money(saving)} per month{share}, with {chosen.get('trainable_params', math.nan):,.0f} "
                     "trainable params.")
        lines.append(_accuracy_gap(best, chosen, gap))
    lines.append(_axes(best, chosen))
    lines.append(f"On {cost.hardware} at {money(cost.price_per_device_hour)}/device-hour and {cost.monthly_requests:,.0f} requests/month "
                 f"over {cost.horizon_months:g} months (one-off cost {money(one_off)} = sweep training + engineering): "
                 f"ROI {_ratio(chosen.get('roi', math.nan))}, payback {_months(float(chosen.get('payback_months', math.nan)))}.")
    lines.append("Pareto frontier taken over: " + ", ".join(f"{m} ({mt.direction(m).value})" for m in dims) + ".")
    return " ".join(line for line in lines if line)


def _accuracy_gap(best: pd.Series, chosen: pd.Series, gap: float) -> str:
    """The accuracy given up, judged by the one noise rule (sweep.noise.beyond_noise, through stats.within_noise)."""
    args = (best["eval_accuracy"], best.get("eval_n", np.nan), chosen["eval_accuracy"], chosen.get("eval_n", np.nan))
    lo, hi = accuracy_gap_interval(*args)
    if math.isnan(lo):
        return "No eval_samples were recorded, so whether the gap is noise cannot be said."
    inside = within_noise(*args)
    return (f"The gap of {gap:.2f} points is {'within' if inside else 'beyond'} the noise (its 95% interval, from the "
            f"Wilson intervals of the two accuracies on n={best['eval_n']:.0f} and n={chosen['eval_n']:.0f}, is "
            f"[{lo * 100:.2f}, {hi * 100:.2f}] points and {'contains' if inside else 'excludes'} zero): "
            + ("the two are statistically indistinguishable on this eval set."
               if inside else "the best is measurably more accurate; the saving buys a real accuracy loss."))


AXES = (("latency_p50_ms", "faster to serve with the adapter active", "slower"), ("peak_memory_mb", "smaller in memory", "larger"),
        ("train_time_s", "faster to train", "slower"), ("trainable_params", "smaller in trainable parameters", "larger"))


def _axes(best: pd.Series, chosen: pd.Series) -> str:
    """The recommended config against the best one on each measured axis, a difference only beyond the noise."""
    if chosen.name == best.name:
        return ""
    said = []
    for name, better, worse in AXES:
        a, b = float(chosen.get(name, math.nan)), float(best.get(name, math.nan))
        if not (math.isfinite(a) and math.isfinite(b)):
            continue
        if differs(name, chosen, best):
            lower_is_better = mt.direction(name) is Direction.MIN
            said.append(f"{better if (a < b) == lower_is_better else worse} ({name} {a:,.4g} vs {b:,.4g})")
        else:
            said.append(f"indistinguishable in {name}")
    return ("Against the best, the recommended config is " + "; ".join(said) + ".") if said else ""


def _points(x: float) -> str:
    return f"{x:g} accuracy point" + ("" if x == 1 else "s")


def _ratio(x: float) -> str:
    x = float(x)
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "unbounded (nothing spent)" if x > 0 else "-inf"
    return f"{x:+.0%}"


def _months(x: float) -> str:
    if math.isinf(x):
        return "never (net monthly benefit <= 0)"
    return "n/a" if math.isnan(x) else (f"{x:.1f} months" if x >= 0.1 else f"{x:.2g} months")
