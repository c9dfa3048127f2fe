"""PNG plots (matplotlib, no display): Pareto scatter plots and the grouped accuracy plot.

Figures are built with `matplotlib.figure.Figure` and saved through the Agg canvas,
so nothing touches pyplot's global state or needs a display.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sweep.report.tables import cell_key, header

FRONTIER = "#d62728"
DOMINATED = "#9e9e9e"
GROUP = "#1f77b4"


def _figure(width: float = 6.4, height: float = 4.4):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _log_scale(values: np.ndarray) -> bool:
    v = values[np.isfinite(values)]
    return v.size > 1 and (v > 0).all() and v.max() / v.min() > 100


def pareto_plot(points: pd.DataFrame, x: str, y: str, mask: np.ndarray, path: Path, title: str) -> Path:
    """Scatter of `y` against `x`: dominated points grey, the frontier red and connected in x order.

    Points that fold several seeds carry error bars from their min to max accuracy.
    """
    fig, ax = _figure()
    xs = points[x].to_numpy(dtype=float)
    ys = points[y].to_numpy(dtype=float)
    ok = np.isfinite(xs) & np.isfinite(ys)
    front = mask & ok
    dom = ~mask & ok
    if {"eval_accuracy_min", "eval_accuracy_max", "n_seeds"} <= set(points.columns) and y == "eval_accuracy":
        multi = ok & (points["n_seeds"].to_numpy() > 1)
        if multi.any():
            lo = ys[multi] - points["eval_accuracy_min"].to_numpy(dtype=float)[multi]
            hi = points["eval_accuracy_max"].to_numpy(dtype=float)[multi] - ys[multi]
            ax.errorbar(xs[multi], ys[multi], yerr=[lo, hi], fmt="none", ecolor="#555555", elinewidth=1, capsize=3,
                        zorder=1, label="seed range")
    ax.scatter(xs[dom], ys[dom], c=DOMINATED, s=28, zorder=2, label="dominated")
    order = np.argsort(xs[front], kind="stable")
    fx, fy = xs[front][order], ys[front][order]
    ax.plot(fx, fy, color=FRONTIER, linewidth=1.5, zorder=3)
    ax.scatter(fx, fy, c=FRONTIER, s=46, zorder=4, edgecolors="black", linewidths=0.5, label="Pareto frontier")
    labels = points["first_trial"].to_numpy()[front][order] if "first_trial" in points else [""] * len(fx)
    for px, py, lab in zip(fx, fy, labels):
        ax.annotate(f"#{lab}", (px, py), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if _log_scale(xs[ok]):
        ax.set_xscale("log")
    ax.set_xlabel(header(x))
    ax.set_ylabel(header(y))
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    if ok.any():
        ax.legend(fontsize=8, loc="best")
    else:
        ax.text(0.5, 0.5, "no trial has both values", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    return path


def group_plot(trials: pd.DataFrame, by: list[str], metric: str, path: Path, title: str) -> Path:
    """Every completed trial's `metric` per group of `by` (dots), with the group mean (horizontal line)."""
    fig, ax = _figure(width=max(6.4, 1.1 * trials[by].drop_duplicates().shape[0] + 2))
    keys = trials[by].apply(lambda row: ", ".join(cell_key(row[c]) for c in by), axis=1)
    names = list(dict.fromkeys(keys))
    rng = np.random.default_rng(0)  # fixed jitter: the same report twice gives the same picture
    for i, name in enumerate(names):
        vals = pd.to_numeric(trials.loc[keys == name, metric], errors="coerce").dropna().to_numpy()
        if vals.size:
            ax.hlines(vals.mean(), i - 0.3, i + 0.3, colors=GROUP, linewidth=2, label="group mean" if i == 0 else None)
            ax.scatter(i + rng.uniform(-0.15, 0.15, vals.size), vals, c=GROUP, s=22, zorder=3)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=20 if len(names) > 3 else 0, ha="right" if len(names) > 3 else "center", fontsize=8)
    ax.set_xlabel(", ".join(by))
    ax.set_ylabel(header(metric))
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    if names:
        ax.legend(fontsize=8, loc="best")
    vals = pd.to_numeric(trials[metric], errors="coerce").dropna()
    if len(vals):
        lo, hi = float(vals.min()), float(vals.max())
        pad = max((hi - lo) * 0.15, 0.01)
        ax.set_ylim(lo - pad, hi + pad)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    return path
