"""Noise checks: binomial confidence intervals on accuracy and mean/spread over seeds.

An accuracy measured on n eval examples is a binomial proportion; its 95% Wilson
interval says how far a rerun on another sample of the same size could land. Two
configs are "within noise" when `sweep.noise.beyond_noise` says they do not differ:
the 95% interval of their difference (Newcombe's, from the two Wilson intervals,
each on its own n) contains zero. Several seeds of one config (same config except `train.seed`) are
folded into one point: mean, standard deviation and range of every metric.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sweep.config.hashing import EXCLUDED_KEYS
from sweep.metrics import Direction
from sweep.noise import beyond_noise, difference_interval, wilson_interval
from sweep.report.pareto import order_best_first

SEED_KEY = "train.seed"
CONFIG_PREFIXES = ("model.", "data.", "lora.", "quant.", "train.")


def within_noise(best_accuracy: float, best_n: float, other_accuracy: float, other_n: float) -> bool:
    """`not beyond_noise` of the two accuracies, each on its own eval size: the one rule (sweep/noise.py). True also
    when an n is unknown (no difference can be claimed); `accuracy_gap_interval` says whether one could be judged."""
    return not beyond_noise("eval_accuracy", _float(best_accuracy), _float(other_accuracy), a_n=_float(best_n),
                            b_n=_float(other_n))


def accuracy_gap_interval(best_accuracy: float, best_n: float, other_accuracy: float, other_n: float) -> tuple[float, float]:
    """95% interval of best - other accuracy (the interval `within_noise` checks for zero); (nan, nan) without n."""
    a, b = _float(best_accuracy), _float(other_accuracy)
    return difference_interval(a, wilson_interval(a, _float(best_n)), b, wilson_interval(b, _float(other_n)))


def _float(x) -> float:
    try:
        return math.nan if x is None else float(x)
    except (TypeError, ValueError):
        return math.nan


def config_columns(frame: pd.DataFrame) -> list[str]:
    """Config (parameter) columns of a trials frame."""
    return [c for c in frame.columns if c.startswith(CONFIG_PREFIXES)]


def config_key_columns(frame: pd.DataFrame) -> list[str]:
    """Columns that identify a config up to its seed (runtime knobs left out, as in the config hash)."""
    return [c for c in config_columns(frame) if c != SEED_KEY and c not in EXCLUDED_KEYS]


def _text(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "None"
    return str(v)


def config_keys(frame: pd.DataFrame) -> pd.Series:
    """One string per row naming its config up to the seed (equal strings = seeds of one config)."""
    cols = config_key_columns(frame)
    if frame.empty:
        return pd.Series([], dtype=object, index=frame.index)
    if not cols:
        return frame["config_hash"].astype(str)
    return frame[cols].apply(lambda row: "|".join(f"{c}={_text(row[c])}" for c in cols), axis=1)


def measured(frame: pd.DataFrame) -> pd.DataFrame:
    """Trials that ran to completion themselves: COMPLETE and not a reuse of another trial's result."""
    if frame.empty:
        return frame
    reused = frame["reused_from"].notna() if "reused_from" in frame else False
    return frame[(frame["status"] == "COMPLETE") & ~reused]


def config_points(frame: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """One row per config (seeds folded): mean of each metric, accuracy std/min/max, seeds, trials, eval size.

    Accuracy intervals pool the seeds: n = the summed eval_samples (seeds treated as independent draws).
    """
    done = measured(frame)
    if done.empty:
        return pd.DataFrame(columns=["config", "trials", "n_seeds", *metrics])
    keys = config_keys(done)
    rows = []
    for key, part in done.groupby(keys, sort=False):
        part = part.sort_values("trial")
        first = part.iloc[0]
        row = {"config": key, "trials": ", ".join(f"#{int(t)}" for t in part["trial"]),
               "first_trial": int(first["trial"]), "config_hash": first["config_hash"],
               "config_hashes": ", ".join(dict.fromkeys(part["config_hash"].astype(str))),
               "n_seeds": int(part["train.seed"].nunique()) if SEED_KEY in part else 1, "n_trials": len(part)}
        for c in [*config_columns(done), "schedule"]:
            if c != SEED_KEY and c in done:
                row[c] = first[c]
        for m in metrics:
            vals = pd.to_numeric(part[m], errors="coerce") if m in part else pd.Series([np.nan])
            row[m] = float(vals.mean()) if vals.notna().any() else np.nan
        acc = pd.to_numeric(part.get("eval_accuracy", pd.Series([np.nan] * len(part))), errors="coerce")
        row["eval_accuracy_std"] = float(acc.std(ddof=1)) if acc.notna().sum() > 1 else np.nan
        row["eval_accuracy_min"] = float(acc.min()) if acc.notna().any() else np.nan
        row["eval_accuracy_max"] = float(acc.max()) if acc.notna().any() else np.nan
        n = pd.to_numeric(part.get("eval_samples", pd.Series([np.nan] * len(part))), errors="coerce")
        row["eval_n"] = float(n.sum()) if n.notna().any() else np.nan
        lo, hi = wilson_interval(row.get("eval_accuracy", np.nan), row["eval_n"])
        row["ci_low"], row["ci_high"] = lo, hi
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass
class NoiseVerdict:
    """The top configs against the best one: which gaps are within the noise (`within_noise`)."""

    table: pd.DataFrame  # rank, trials, accuracy, seeds std, eval n, CI, gap (points) and its 95% interval, within_noise
    best_label: str
    ci: tuple[float, float]
    n: float
    tied: list[str]  # labels of the other top configs within noise of the best
    text: str


def noise_check(points: pd.DataFrame, accuracy_direction: Direction, top: int = 5) -> NoiseVerdict | None:
    """Compare the `top` configs by accuracy with the best one; None without accuracies."""
    if points.empty or "eval_accuracy" not in points or points["eval_accuracy"].notna().sum() == 0:
        return None
    order = order_best_first(points["eval_accuracy"].to_numpy(dtype=float), accuracy_direction)
    ranked = points.iloc[order]
    ranked = ranked[ranked["eval_accuracy"].notna()].head(top)
    best = ranked.iloc[0]
    rows, tied, unknown = [], [], []
    for i, (_, r) in enumerate(ranked.iterrows(), start=1):
        gap = (float(best["eval_accuracy"]) - float(r["eval_accuracy"])) * 100.0
        args = (best["eval_accuracy"], best["eval_n"], r["eval_accuracy"], r["eval_n"])
        lo, hi = (x * 100.0 for x in accuracy_gap_interval(*args))  # of best - this one, in points
        if gap < 0:  # a MIN-direction accuracy: the gap is shown as a distance, its interval the same way round
            lo, hi = -hi, -lo
        inside = within_noise(*args)
        judged = not math.isnan(lo)
        if i > 1 and judged and inside:
            tied.append(r["trials"])
        elif i > 1 and not judged:
            unknown.append(r["trials"])
        verdict = "best" if i == 1 else ("unknown (no eval_samples)" if not judged else ("yes" if inside else "no"))
        rows.append({"rank": i, "trials": r["trials"], "n_seeds": r["n_seeds"], "eval_accuracy": r["eval_accuracy"],
                     "seed_std": r["eval_accuracy_std"], "eval_n": r["eval_n"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                     "gap_points": abs(gap), "gap_ci_low_points": math.nan if i == 1 else lo,
                     "gap_ci_high_points": math.nan if i == 1 else hi, "within_noise_of_best": verdict})
    ci = (float(best["ci_low"]), float(best["ci_high"]))
    n_text = f"n={best['eval_n']:.0f}" if math.isfinite(float(best["eval_n"])) else "unknown n"
    if math.isnan(ci[0]):
        text = (f"Best config {best['trials']} has no eval_samples, so no confidence interval can be given; "
                "treat small accuracy gaps as unresolved.")
    elif tied:
        text = (f"Best config {best['trials']}: accuracy {best['eval_accuracy']:.4f}, 95% Wilson interval "
                f"[{ci[0]:.4f}, {ci[1]:.4f}] ({n_text}). {', '.join(tied)} are within noise of it: the 95% interval of "
                "each one's gap to the best (from the two Wilson intervals, each on its own n) contains zero, so the "
                "differences could be the noise of the eval set; a larger eval set or more seeds would be needed to "
                "rank them.")
    else:
        text = (f"Best config {best['trials']}: accuracy {best['eval_accuracy']:.4f}, 95% Wilson interval "
                f"[{ci[0]:.4f}, {ci[1]:.4f}] ({n_text}). " + ("No other config is within noise of it (the 95% interval "
                "of every gap to the best excludes zero): the lead is larger than the eval-set noise."
                if len(ranked) > len(unknown) + 1 else "It is the only completed config." if len(ranked) == 1 else ""))
    if unknown and not math.isnan(ci[0]):
        text = text.rstrip() + (f" {', '.join(unknown)} recorded no eval_samples: whether {'its' if len(unknown) == 1 else 'their'} gap "
                 "is noise cannot be said.")
    return NoiseVerdict(pd.DataFrame(rows), str(best["trials"]), ci, float(best["eval_n"]), tied, text)
