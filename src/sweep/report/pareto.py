"""Pareto frontiers over any number of objectives; every direction comes from sweep/metrics.py.

A point is dominated when another point is at least as good on every objective and
strictly better on one. Identical points do not dominate each other, so duplicates
on the frontier are all kept. Rows with a missing (NaN) objective are never on the
frontier and never dominate anything.
"""

from __future__ import annotations

import numpy as np

from sweep import metrics as mt
from sweep.metrics import Direction


def as_minimised(values: np.ndarray, direction: Direction) -> np.ndarray:
    """`values` turned so that smaller is better (MAX columns negated)."""
    if direction is Direction.NONE:
        raise ValueError("a metric with no direction (Direction.NONE) cannot be a Pareto objective")
    v = np.asarray(values, dtype=float)
    return -v if direction is Direction.MAX else v


def non_dominated(points: np.ndarray, directions: list[Direction]) -> np.ndarray:
    """Boolean mask of the rows of `points` (n x k) that no other row dominates."""
    pts = np.asarray(points, dtype=float)
    if pts.ndim == 1:
        pts = pts.reshape(-1, 1)
    n, k = pts.shape
    if len(directions) != k:
        raise ValueError(f"non_dominated: {k} objective columns but {len(directions)} directions")
    if n == 0:
        return np.zeros(0, dtype=bool)
    q = np.column_stack([as_minimised(pts[:, j], d) for j, d in enumerate(directions)]) if k else pts
    finite = ~np.isnan(q).any(axis=1)
    mask = finite.copy()
    qf = q[finite]
    idx = np.flatnonzero(finite)
    for row, i in enumerate(idx):
        others = qf
        no_worse = (others <= qf[row]).all(axis=1)
        better = (others < qf[row]).any(axis=1)
        if (no_worse & better).any():
            mask[i] = False
    return mask


def directions_of(names: list[str]) -> list[Direction]:
    """Directions of declared metrics, in order (fails loudly on an unknown name or a NONE metric)."""
    out = []
    for name in names:
        d = mt.direction(name)
        if d is Direction.NONE:
            raise ValueError(f"metric {name!r} has no direction in sweep/metrics.py and cannot be a Pareto objective")
        out.append(d)
    return out


def frontier_mask(frame, columns: list[str], directions: list[Direction] | None = None) -> np.ndarray:
    """Non-dominated rows of a DataFrame over `columns` (directions from the metric table unless given)."""
    dirs = directions if directions is not None else directions_of(columns)
    return non_dominated(frame[columns].to_numpy(dtype=float), dirs)


def best_position(values, direction: Direction) -> int | None:
    """Position of the best finite value (first on ties), or None when there is none."""
    v = as_minimised(np.asarray(values, dtype=float), direction)
    if v.size == 0 or np.isnan(v).all():
        return None
    return int(np.nanargmin(v))


def order_best_first(values, direction: Direction) -> np.ndarray:
    """Positions sorted best first (stable; NaN last)."""
    v = as_minimised(np.asarray(values, dtype=float), direction)
    v = np.where(np.isnan(v), np.inf, v)
    return np.argsort(v, kind="stable")
