"""The noise rule: intervals for the measured metrics and when two values may be called different (exact values)."""

from __future__ import annotations

import math

from sweep import metrics as mt
from sweep.noise import beyond_noise, median_interval, median_rank_bounds, wilson_interval


def test_median_interval_uses_the_binomial_order_statistics():
    assert median_rank_bounds(5) is None  # too few calls for any 95% interval
    assert median_rank_bounds(6) == (0, 5)  # (x1, x6): 96.9% coverage
    assert median_rank_bounds(10) == (1, 8)  # (x2, x9): 97.9%, the textbook interval
    assert median_rank_bounds(30) == (9, 20)  # (x10, x21)
    assert median_interval([5.0, 1.0, 4.0, 2.0, 3.0, 9.0, 7.0, 8.0, 6.0, 10.0]) == (2.0, 9.0)
    assert all(math.isnan(x) for x in median_interval([1.0, 2.0]))


def test_every_noise_kind():
    assert beyond_noise("trainable_params", 100.0, 101.0)  # exact: any difference
    assert not beyond_noise("trainable_params", 100.0, 100.0)
    assert not beyond_noise("train_time_s", 100.0, 109.0) and beyond_noise("train_time_s", 100.0, 112.0)  # 10%
    assert not beyond_noise("peak_memory_mb", 100.0, 142.0) and beyond_noise("peak_memory_mb", 100.0, 144.0)  # 30%
    # interval: the intervals must not overlap and the gap must pass the 10% floor
    assert beyond_noise("latency_p50_ms", 10.0, 15.0, (9.5, 10.5), (14.0, 16.0))
    assert not beyond_noise("latency_p50_ms", 10.0, 15.0, (9.5, 14.5), (14.0, 16.0))  # overlapping
    assert not beyond_noise("latency_p50_ms", 10.0, 10.5, (9.99, 10.01), (10.49, 10.51))  # apart, but within 10%
    assert not beyond_noise("latency_p50_ms", 10.0, 15.0)  # no interval measured: nothing can be claimed
    # binomial: neither value inside the other's Wilson interval
    assert not beyond_noise("eval_accuracy", 0.85, 0.80, a_n=100, b_n=100)
    assert beyond_noise("eval_accuracy", 0.85, 0.60, a_n=100, b_n=100)
    assert not beyond_noise("train_share", 0.1, 0.9)  # never compared
    assert round(wilson_interval(0.5, 100)[0], 4) == 0.4038


def test_interval_metrics_name_their_bounds_and_every_noisy_metric_has_a_tolerance():
    assert mt.interval_names("latency_p50_ms") == ("latency_p50_ms_ci_low", "latency_p50_ms_ci_high")
    for m in mt.METRICS:
        if m.noise is mt.Noise.RELATIVE:
            assert 0 < m.rel_noise < 1, m.name
