"""Pareto masks on hand-made points: ties, duplicates, three objectives with mixed directions, NaN rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sweep.metrics import Direction
from sweep.report.pareto import best_position, directions_of, frontier_mask, non_dominated, order_best_first

MAX, MIN = Direction.MAX, Direction.MIN


def test_two_objectives_max_min():
    pts = np.array([[0.80, 10], [0.90, 20], [0.85, 30], [0.70, 5]])
    assert non_dominated(pts, [MAX, MIN]).tolist() == [True, True, False, True]


def test_identical_points_are_all_kept_and_equal_but_worse_on_one_is_dominated():
    pts = np.array([[1.0, 1.0], [1.0, 1.0], [0.0, 2.0]])
    assert non_dominated(pts, [MAX, MIN]).tolist() == [True, True, False]
    pts = np.array([[1.0, 1.0], [1.0, 2.0]])  # same accuracy, higher cost
    assert non_dominated(pts, [MAX, MIN]).tolist() == [True, False]
    pts = np.array([[1.0, 1.0], [0.5, 1.0]])  # same cost, lower accuracy
    assert non_dominated(pts, [MAX, MIN]).tolist() == [True, False]


def test_three_objectives_mixed_directions():
    # accuracy (max), latency (min), throughput (max)
    pts = np.array([
        [0.90, 100, 5.0],   # a: frontier
        [0.90, 100, 4.0],   # b: equal to a but lower throughput -> dominated by a
        [0.80, 50, 1.0],    # c: lowest latency -> frontier
        [0.95, 200, 1.0],   # d: best accuracy -> frontier
        [0.80, 60, 1.0],    # e: like c but slower -> dominated by c
        [0.85, 50, 0.5],    # f: more accurate than c at equal latency, less throughput -> frontier
    ])
    assert non_dominated(pts, [MAX, MIN, MAX]).tolist() == [True, False, True, True, False, True]
    # every objective minimised instead: c (0.80, 50, 1.0) is beaten by nothing; f has the lowest throughput
    assert non_dominated(pts, [MIN, MIN, MIN]).tolist() == [False, False, True, False, False, True]


def test_nan_rows_are_never_on_the_frontier_and_dominate_nothing():
    pts = np.array([[np.nan, 0.0], [0.5, 1.0], [0.6, np.nan]])
    assert non_dominated(pts, [MAX, MIN]).tolist() == [False, True, False]


def test_matches_the_definition_on_random_points():
    rng = np.random.default_rng(0)
    pts = rng.integers(0, 4, size=(60, 3)).astype(float)  # small integers: many ties and duplicates
    dirs = [MAX, MIN, MAX]
    q = pts * np.array([-1, 1, -1])
    expected = [not any((q[j] <= q[i]).all() and (q[j] < q[i]).any() for j in range(len(q))) for i in range(len(q))]
    assert non_dominated(pts, dirs).tolist() == expected


def test_directions_come_from_the_metric_table():
    df = pd.DataFrame({"eval_accuracy": [0.8, 0.9, 0.85], "trainable_ratio": [0.01, 0.05, 0.06]})
    assert frontier_mask(df, ["eval_accuracy", "trainable_ratio"]).tolist() == [True, True, False]
    assert directions_of(["eval_accuracy", "peak_memory_mb"]) == [MAX, MIN]
    with pytest.raises(ValueError, match="eval_samples"):
        directions_of(["eval_samples"])  # declared with no direction
    with pytest.raises(KeyError, match="unknown metric"):
        directions_of(["accuracy"])


def test_edge_cases():
    assert non_dominated(np.zeros((0, 2)), [MAX, MIN]).tolist() == []
    assert non_dominated(np.array([[3.0, 3.0]]), [MAX, MIN]).tolist() == [True]
    with pytest.raises(ValueError, match="2 objective columns but 1 directions"):
        non_dominated(np.zeros((2, 2)), [MAX])
    with pytest.raises(ValueError):
        non_dominated(np.zeros((2, 1)), [Direction.NONE])


def test_best_and_order_follow_the_direction():
    v = [0.5, np.nan, 0.9, 0.9]
    assert best_position(v, MAX) == 2 and best_position(v, MIN) == 0
    assert order_best_first(v, MAX).tolist() == [2, 3, 0, 1]
    assert best_position([np.nan], MAX) is None
