"""The noise rule: intervals for the measured metrics and when two values may be called different (exact values)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from sweep import metrics as mt
from sweep.noise import beyond_noise, difference_interval, median_interval, median_rank_bounds, wilson_interval


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
    # interval: the 95% interval of the difference must exclude zero and the gap must pass the 10% floor
    assert beyond_noise("latency_p50_ms", 10.0, 15.0, (9.5, 10.5), (14.0, 16.0))
    # the intervals overlap, but the difference's interval 5 +- [4.61, 1.12] excludes zero
    assert beyond_noise("latency_p50_ms", 10.0, 15.0, (9.5, 14.5), (14.0, 16.0))
    assert not beyond_noise("latency_p50_ms", 10.0, 15.0, (6.0, 14.0), (11.0, 19.0))  # 5 +- 5.66: contains zero
    assert not beyond_noise("latency_p50_ms", 10.0, 10.5, (9.99, 10.01), (10.49, 10.51))  # apart, but within 10%
    assert beyond_noise("latency_p50_ms", 10.0, 10.5, (9.99, 10.01), (10.49, 10.51), drift=False)  # interleaved: no floor
    assert not beyond_noise("latency_p50_ms", 10.0, 15.0)  # no interval measured: nothing can be claimed
    # binomial: the same rule on the two Wilson intervals (Newcombe's interval of a difference of proportions)
    assert not beyond_noise("eval_accuracy", 0.85, 0.80, a_n=100, b_n=100)
    assert beyond_noise("eval_accuracy", 0.85, 0.60, a_n=100, b_n=100)
    assert not beyond_noise("eval_accuracy", 0.85, 0.60, a_n=100)  # one n unknown: nothing claimed
    assert not beyond_noise("train_share", 0.1, 0.9)  # never compared
    assert round(wilson_interval(0.5, 100)[0], 4) == 0.4038


def test_interval_metrics_name_their_bounds_and_every_noisy_metric_has_a_tolerance():
    assert mt.interval_names("latency_p50_ms") == ("latency_p50_ms_ci_low", "latency_p50_ms_ci_high")
    for m in mt.METRICS:
        if m.noise is mt.Noise.RELATIVE:
            assert 0 < m.rel_noise < 1, m.name


def _call_sites(a: float, b: float, n: float) -> dict[str, bool]:
    """Every place that decides whether two accuracies differ, asked about `a` (the better) against `b` on `n`
    examples each: True = beyond the noise."""
    from sweep.multitask.noise import Timing, compare_text, differ
    from sweep.report import recommend as rc
    from sweep.report import stats

    points = pd.DataFrame({"trials": ["#0", "#1"], "config_hash": ["a" * 12, "b" * 12], "n_seeds": [1, 1],
                           "eval_accuracy": [a, b], "eval_accuracy_std": [math.nan] * 2, "eval_n": [n, n]})
    lo_hi = [wilson_interval(x, n) for x in (a, b)]
    points["ci_low"], points["ci_high"] = [x[0] for x in lo_hi], [x[1] for x in lo_hi]
    verdict = stats.noise_check(points, mt.Direction.MAX)
    best, other = points.iloc[0], points.iloc[1]
    gap_text = rc._accuracy_gap(best, other, (a - b) * 100)
    assert ("within the noise" in gap_text) != ("beyond the noise" in gap_text), gap_text
    # multitask compares latency medians, not accuracies: its helper is asked about the same two values with the
    # same intervals (x100: the verdict of an interval rule does not depend on the unit), timed interleaved
    ta, tb = (Timing(x * 100, x * 100, lo * 100, hi * 100, 0.95, int(n)) for x, (lo, hi) in zip((a, b), lo_hi))
    return {
        "noise.beyond_noise": beyond_noise("eval_accuracy", a, b, a_n=n, b_n=n),
        "noise.beyond_noise (swapped)": beyond_noise("eval_accuracy", b, a, a_n=n, b_n=n),
        "noise.difference_interval": not (difference_interval(a, lo_hi[0], b, lo_hi[1])[0] <= 0.0),
        "report.stats.within_noise": not stats.within_noise(a, n, b, n),
        "report.stats.noise_check table": verdict.table.iloc[1]["within_noise_of_best"] == "no",
        "report.stats.noise_check tied": verdict.tied == [],
        "report.recommend.differs": rc.differs("eval_accuracy", best, other),
        "report.recommend accuracy gap text": "beyond the noise" in gap_text,
        "multitask.noise.differ": differ(ta, tb),
        "multitask.noise.compare_text": "indistinguishable" not in compare_text("a", ta, "b", tb),
    }


def test_every_call_site_decides_0375_vs_0300_at_n160_alike():
    """Issue 24: 0.375 vs 0.300 on 160 examples each was "not within noise" for the report's table (0.300 lies just
    below 0.375's Wilson interval, [0.3037, 0.4521]) and "not beyond noise" for the rule (0.375 lies just inside
    0.300's, [0.2344, 0.3750]). One rule now: the gap's interval [-0.028, 0.176] contains zero, so the difference
    is noise everywhere."""
    assert wilson_interval(0.300, 160)[1] > 0.375 and wilson_interval(0.375, 160)[0] > 0.300  # the old disagreement
    lo, hi = difference_interval(0.375, wilson_interval(0.375, 160), 0.300, wilson_interval(0.300, 160))
    assert lo == pytest.approx(-0.0285, abs=1e-4) and hi == pytest.approx(0.1763, abs=1e-4)
    sites = _call_sites(0.375, 0.300, 160)
    assert set(sites.values()) == {False}, sites


def test_the_rule_flips_at_one_example_and_every_call_site_with_it():
    """Against 48/160 = 0.300: 64/160 is within the noise, 65/160 beyond (the two-proportion z-test crosses 5%
    between them too: p = 0.061 and 0.047). Every call site flips at the same example."""
    inside, beyond = _call_sites(64 / 160, 0.300, 160), _call_sites(65 / 160, 0.300, 160)
    assert set(inside.values()) == {False}, inside
    assert set(beyond.values()) == {True}, beyond
    lo_in = difference_interval(64 / 160, wilson_interval(64 / 160, 160), 0.3, wilson_interval(0.3, 160))[0]
    lo_out = difference_interval(65 / 160, wilson_interval(65 / 160, 160), 0.3, wilson_interval(0.3, 160))[0]
    assert -0.005 < lo_in < 0.0 < lo_out < 0.002
    # each value on its own n: 0.40 on 1000 examples against 0.30 on 160 is beyond, on 160 against 160 it is not
    assert beyond_noise("eval_accuracy", 0.40, 0.30, a_n=1000, b_n=160)
    assert not beyond_noise("eval_accuracy", 0.40, 0.30, a_n=160, b_n=160)
    # an interval metric at the boundary: the difference's interval touching zero is not beyond the noise
    assert difference_interval(15.0, (12.0, 18.0), 10.0, (6.0, 14.0)) == (0.0, 10.0)  # 5 -+ sqrt(3^2 + 4^2)
    assert not beyond_noise("latency_p50_ms", 15.0, 10.0, (12.0, 18.0), (6.0, 14.0))
    assert beyond_noise("latency_p50_ms", 15.5, 10.0, (12.5, 18.5), (6.0, 14.0))
    assert not beyond_noise("latency_p50_ms", 10.0, 15.0, (6.0, 14.0), (12.0, 18.0))  # either way round
