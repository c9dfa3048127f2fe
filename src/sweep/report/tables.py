"""Comparison tables: every trial, grouped comparisons for the experiment's question, failures, seeds.

Functions here return DataFrames of raw values; `formatted` turns one into display
strings (numbers by unit from sweep/metrics.py, money as USD) with unit-bearing headers.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sweep import metrics as mt
from sweep.config.hashing import EXCLUDED_KEYS
from sweep.measure.memory import CUDA_ALLOCATED, memory_kind
from sweep.report.cost import DERIVED
from sweep.report.pareto import order_best_first
from sweep.report.stats import config_columns, measured

# config columns always shown for a trial (when recorded), in this order
KEY_CONFIG = ("lora.method", "lora.r", "lora.alpha", "lora.alpha_ratio", "lora.dropout", "lora.targets", "schedule",
              "lora.use_dora", "lora.use_rslora", "quant.method", "quant.double_quant", "train.lr", "train.seed")
# metrics shown in the trial table besides the study objectives (all of them are in trials.csv)
KEY_METRICS = ("eval_accuracy", "eval_loss", "eval_samples", "trainable_params", "trainable_ratio", "adapter_size_mb",
               "train_time_s", "peak_memory_mb", "latency_p50_ms", "merged_latency_p50_ms", "generation_tokens_per_s")
# means per group of these cost metrics
GROUP_COSTS = ("trainable_params", "train_time_s", "peak_memory_mb", "merged_latency_p50_ms", "training_cost_usd",
               "monthly_total_usd")
# candidate axes for extra grouped tables, and the most distinct values one may have
AXES = ("lora.targets", "lora.r", "lora.method", "schedule", "lora.use_dora", "lora.use_rslora", "quant.method",
        "lora.init", "train.lr", "model.name", "data.name", "host", "node_id")  # host, node_id: where trials ran
MAX_AXIS_VALUES = 8
MISSING = "–"
PREDICTED, MEASURED = "predicted_peak_memory_mb", "peak_memory_mb"
RELATIVE_ERROR = "relative_error"  # (predicted - measured) / measured of the memory prediction


# ------------------------------------------------------------------ formatting
def _is_missing(v) -> bool:
    if v is None:
        return True
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def unit_of(column: str) -> str | None:
    if column in mt.BY_NAME:
        return mt.BY_NAME[column].unit
    if column in DERIVED:
        return DERIVED[column][0]
    return None


def fmt(value, column: str = "") -> str:
    """One cell as text, by the column's unit."""
    if isinstance(value, (list, tuple, dict)):
        return str(value)
    if _is_missing(value):
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    v = float(value)
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    unit = unit_of(column)
    if unit == "params":
        return f"{v:,.0f}"
    if column == "roi":
        return f"{v:+.0%}"
    if column == RELATIVE_ERROR:
        return f"{v:+.1%}"
    if unit and unit.startswith("USD"):
        return f"{v:,.2f}" if abs(v) >= 0.01 or v == 0 else f"{v:.2g}"
    if unit == "fraction" or column in ("ci_low", "ci_high", "eval_accuracy_min", "eval_accuracy_max"):
        return f"{v:.4f}" if abs(v) >= 0.01 or v == 0 else f"{v:.3g}"
    if column in ("seed_std", "eval_accuracy_std", "std", "spread"):
        return f"{v:.4f}"
    if unit in ("s", "MiB", "months") or column in ("gap_points", "gap_ci_low_points", "gap_ci_high_points"):
        return f"{v:,.2f}"
    if unit == "ms/batch":
        return f"{v:,.2f}"
    if v.is_integer() and abs(v) < 1e15:
        return f"{int(v)}"
    return f"{v:.4g}"


def header(column: str) -> str:
    unit = unit_of(column)
    return f"{column} ({unit})" if unit else column


def formatted(frame: pd.DataFrame) -> pd.DataFrame:
    """Display strings with unit-bearing headers."""
    out = pd.DataFrame({header(c): [fmt(v, c) for v in frame[c]] for c in frame.columns}, dtype=object)
    return out.reset_index(drop=True)


def cell_key(v) -> str:
    """A config value as the text equal values share (groups, seed folding); missing -> '–'."""
    return fmt(v)


# ------------------------------------------------------------------ tables
def varying(frame: pd.DataFrame, columns) -> list[str]:
    """The columns (of those given) that take more than one value in the frame."""
    return [c for c in columns if c in frame and frame[c].map(cell_key).nunique() > 1]


def trials_table(frame: pd.DataFrame, objectives: list[str]) -> pd.DataFrame:
    """Every trial: number, hash, status, reuse, config, key metrics and training cost."""
    base = ["trial", "config_hash", "status"]
    out = frame[base].copy()
    out["reused"] = [f"= #{int(r)}" if not _is_missing(r) else "" for r in frame["reused_from"]]
    keys = [c for c in KEY_CONFIG if c in frame and (frame[c].map(cell_key) != MISSING).any()]
    others = varying(frame, [c for c in config_columns(frame) if c not in keys and c not in EXCLUDED_KEYS])
    for c in [*keys, *others]:
        out[c] = frame[c]
    metric_cols = [m for m in dict.fromkeys([*objectives, *KEY_METRICS]) if m in frame and frame[m].notna().any()]
    for c in metric_cols:
        out[c] = frame[c]
    if "training_cost_usd" in frame:
        out["training_cost_usd"] = frame["training_cost_usd"]
    return out


def group_table(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per group of `by`: trials, n complete, best / mean / std / spread of eval_accuracy, means of cost metrics.

    Statistics use trials that completed themselves (reused copies left out); `not_complete` counts the others.
    """
    by = [c for c in by if c in frame]
    if not by:
        return pd.DataFrame()
    acc_dir = mt.direction("eval_accuracy")
    keys = frame[by].apply(lambda row: tuple(cell_key(row[c]) for c in by), axis=1)
    done_index = set(measured(frame).index)
    rows = []
    for key, part in frame.groupby(keys, sort=False):
        done = part[part.index.isin(done_index)]
        acc = pd.to_numeric(done.get("eval_accuracy", pd.Series(dtype=float)), errors="coerce").dropna()
        row = dict(zip(by, key))
        row["trials"] = len(part)
        row["n"] = len(done)
        row["not_complete"] = int((part["status"] != "COMPLETE").sum())
        best = order_best_first(acc.to_numpy(), acc_dir)
        row["best"] = float(acc.iloc[best[0]]) if len(acc) else np.nan
        row["mean"] = float(acc.mean()) if len(acc) else np.nan
        row["std"] = float(acc.std(ddof=1)) if len(acc) > 1 else np.nan
        row["spread"] = float(acc.max() - acc.min()) if len(acc) else np.nan
        for c in GROUP_COSTS:
            if c in done:
                vals = pd.to_numeric(done[c], errors="coerce")
                row[c] = float(vals.mean()) if vals.notna().any() else np.nan
        rows.append(row)
    out = pd.DataFrame(rows)
    order = order_best_first(out["mean"].to_numpy(dtype=float), acc_dir)
    out = out.iloc[order].reset_index(drop=True)
    return out.rename(columns={"best": "best eval_accuracy", "mean": "mean eval_accuracy", "std": "std", "spread": "spread"})


def other_axes(frame: pd.DataFrame, primary: list[str]) -> list[str]:
    """Config axes besides the experiment's question that vary among a few values in the completed trials."""
    done = measured(frame)
    out = []
    for c in AXES:
        if c in primary or c not in done:
            continue
        n = done[c].map(cell_key).nunique()
        if 1 < n <= MAX_AXIS_VALUES:
            out.append(c)
    return out


def failures_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Trials that did not complete, with the reason."""
    bad = frame[frame["status"] != "COMPLETE"]
    cols = ["trial", "config_hash", "status", "failure_reason", *[c for c in ("lora.targets", "lora.r", "schedule", "quant.method")
                                                                  if c in frame], "device"]
    return bad[cols].reset_index(drop=True)


def ruled_out_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Configs ruled out before training by the sweep's budgets: their key config, prediction and reason."""
    if frame.empty:
        return frame
    shown = ("lora.targets", "lora.r", "quant.method", "train.batch_size", "data.max_seq_len")  # what memory follows
    cols = ["trial", "config_hash", *[c for c in shown if c in frame],
            *varying(frame, [c for c in config_columns(frame) if c not in shown and c not in EXCLUDED_KEYS]),
            *[c for c in ("predicted_peak_memory_mb", "trainable_params") if c in frame and frame[c].notna().any()],
            "failure_reason"]
    return frame[list(dict.fromkeys(cols))].rename(columns={"failure_reason": "why"}).reset_index(drop=True)


def reused_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Trials whose result was copied from an earlier trial with the same config hash."""
    reused = frame[frame["reused_from"].map(lambda v: not _is_missing(v))]
    out = reused[["trial", "config_hash", "reused_from"]].copy()
    out["reused_from"] = [f"#{int(v)}" for v in out["reused_from"]]
    return out.reset_index(drop=True)


def memory_prediction_tables(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The trials that logged a memory prediction (reused copies left out), split by what their peak_memory_mb
    measured: (judged, not judged). Judged: memory kind CUDA allocated (torch.cuda.max_memory_allocated, what
    sweep.plan predicts), with the measured peak and the relative error (predicted - measured) / measured where
    both are recorded. Not judged: the others (CPU: resident-memory growth), the prediction only."""
    if PREDICTED not in frame or frame.empty:
        return pd.DataFrame(), pd.DataFrame()
    has = frame[frame[PREDICTED].notna() & frame["reused_from"].map(_is_missing)]
    cuda = has["device"].map(lambda d: memory_kind(str(d or ""))) == CUDA_ALLOCATED
    cols = ["trial", "config_hash", "status", "device", PREDICTED]
    judged = has[cuda][cols].copy()
    measured = has[cuda][MEASURED] if MEASURED in has else pd.Series(np.nan, index=judged.index)
    judged[MEASURED] = measured
    judged[RELATIVE_ERROR] = (judged[PREDICTED] - measured) / measured.where(measured > 0)
    return judged.reset_index(drop=True), has[~cuda][cols].reset_index(drop=True)


def point_columns(points: pd.DataFrame, extra: list[str]) -> list[str]:
    """Display columns of a config-point table: trials, hash, seeds, the varying config, accuracy (+ spread), extras."""
    cfg = varying(points, [c for c in (*KEY_CONFIG, *config_columns(points)) if c != "train.seed" and c not in EXCLUDED_KEYS])
    cols = ["trials", "config_hashes", "n_seeds", *dict.fromkeys(cfg), "eval_accuracy"]
    if "eval_accuracy_std" in points and points["eval_accuracy_std"].notna().any():
        cols += ["eval_accuracy_std"]
    return [c for c in dict.fromkeys([*cols, *extra]) if c in points]


def seeds_table(points: pd.DataFrame) -> pd.DataFrame:
    """Configs run with several seeds: mean, std, range of accuracy and the pooled 95% interval."""
    multi = points[points["n_seeds"] > 1] if "n_seeds" in points else points.iloc[0:0]
    cols = ["trials", "config_hashes", "n_seeds", "eval_accuracy", "eval_accuracy_std", "eval_accuracy_min",
            "eval_accuracy_max", "eval_n", "ci_low", "ci_high"]
    return multi[[c for c in cols if c in multi]].reset_index(drop=True)
