"""Noise: 95% intervals for the measured metrics, and the one rule deciding whether two values differ.

  wilson_interval      a proportion observed on n examples (accuracy)
  median_interval      the median of timed iterations: distribution-free, from the order statistics
  mean_interval        a mean with its standard error (eval loss over examples)
  difference_interval  the 95% interval of a - b, from the two values' own 95% intervals
  beyond_noise         THE rule: two values of a declared metric differ by more than its noise (sweep/metrics.py)

Every "differs / indistinguishable / within noise" verdict of the report, the recommendation and the multitask
advice is `beyond_noise` (or its negation); nothing else compares two noisy values.

The rule for two measured values a and b, each with its own 95% interval (accuracy: the Wilson interval on its
own n; interval metrics: the interval measured with it): they differ when the 95% interval of the difference
a - b excludes 0. That interval is built from the two intervals by MOVER (Zou & Donner 2008), which for two
Wilson intervals is Newcombe's hybrid score interval for a difference of proportions (Newcombe 1998, method 10):

    lower = (a - b) - sqrt((a - a_low)^2 + (b_high - b)^2)
    upper = (a - b) + sqrt((a_high - a)^2 + (b - b_low)^2)

Why not the two simpler rules it replaces: "b inside a's interval" ignores b's own noise and "neither inside the
other's interval" only asks |a - b| to pass the wider half-width, i.e. about 1.4 standard errors of the
difference when n is equal (a ~17% false-difference rate, not 5%); "the intervals do not overlap" asks for the
sum of the half-widths, about 2.8 standard errors (~0.5%, too strict). The difference interval asks for
sqrt(h_a^2 + h_b^2): 1.96 standard errors of the difference, 95%, with each side's own n and the asymmetry of
the Wilson interval near 0 and 1. At n=160 each, against 0.300 (48/160): 0.375 is within noise (difference
interval [-0.028, 0.176]), 0.400 (64/160) still is, 0.40625 (65/160) is beyond it, where the two-proportion z-test
crosses 5% too (p = 0.061 and 0.047). The samples are treated as independent: two configs scored on the
same eval examples are positively correlated, so the rule is conservative there (a paired test would need the
per-example answers, which are not recorded).

Metrics without an interval: exact ones differ on any difference, relative ones beyond `rel_noise` of the larger
value, `none` never. Interval metrics must pass both the difference interval and their `rel_noise` floor (drift
between two trials that their own intervals do not see); values measured interleaved in one process (the
multitask timings) pass `drift=False` and are judged on the difference interval alone.
"""

from __future__ import annotations

import math

from sweep.metrics import Noise, get

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(accuracy: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion `accuracy` observed on `n` examples; (nan, nan) without data."""
    if n is None or not math.isfinite(float(n)) or n <= 0 or accuracy is None or not math.isfinite(float(accuracy)):
        return (math.nan, math.nan)
    p, n = float(accuracy), float(n)
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denom
    half = (z / denom) * math.sqrt(max(p * (1.0 - p) / n + z2 / (4.0 * n * n), 0.0))
    lo = 0.0 if p <= 0.0 else max(0.0, centre - half)  # exact bounds at 0 and 1 (rounding would leave 1 - 1e-16)
    hi = 1.0 if p >= 1.0 else min(1.0, centre + half)
    return (lo, hi)


CONFIDENCE = 0.95  # two-sided coverage asked of every interval


def _binom_cdf_half(k: int, n: int) -> float:
    """P(B <= k) for B ~ Binomial(n, 1/2)."""
    return 0.0 if k < 0 else sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n


def median_coverage(n: int, lo: int) -> float:
    """Exact coverage of the order statistics (x_lo, x_(n-1-lo)) (0-based) as an interval for the median of n
    independent samples: the count below the true median is Binomial(n, 1/2), whatever the distribution."""
    return 1.0 - 2.0 * _binom_cdf_half(lo, n)


def median_rank_bounds(n: int, confidence: float = CONFIDENCE) -> tuple[int, int] | None:
    """0-based ranks (lo, hi) of the sorted samples: the narrowest symmetric pair whose exact binomial coverage
    of the median is at least `confidence`; None when n is too small for any (n < 6 at 95%)."""
    best = None
    for lo in range(n // 2):
        if median_coverage(n, lo) < confidence:
            break
        best = (lo, n - 1 - lo)
    return best


def median_interval(samples: list[float]) -> tuple[float, float]:
    """~95% distribution-free interval for the median of `samples`; (nan, nan) with fewer than 6 samples."""
    bounds = median_rank_bounds(len(samples))
    if bounds is None:
        return (math.nan, math.nan)
    ordered = sorted(samples)
    return ordered[bounds[0]], ordered[bounds[1]]


def mean_interval(mean: float, se: float, z: float = Z95) -> tuple[float, float]:
    if not (math.isfinite(mean) and math.isfinite(se)):
        return (math.nan, math.nan)
    return mean - z * se, mean + z * se


def difference_interval(a: float, a_ci: tuple[float, float], b: float, b_ci: tuple[float, float]) -> tuple[float, float]:
    """95% interval of a - b from the 95% intervals of a and b (MOVER; Newcombe's interval for Wilson intervals, see
    the module docstring); (nan, nan) when a value or an interval bound is missing."""
    (a_lo, a_hi), (b_lo, b_hi) = a_ci, b_ci
    if not all(math.isfinite(float(x)) for x in (a, b, a_lo, a_hi, b_lo, b_hi)):
        return (math.nan, math.nan)
    d = a - b
    return (d - math.sqrt((a - a_lo) ** 2 + (b_hi - b) ** 2), d + math.sqrt((a_hi - a) ** 2 + (b - b_lo) ** 2))


def intervals(name: str, a: float, b: float, a_ci: tuple[float, float] | None = None, b_ci: tuple[float, float] | None = None,
              a_n: float | None = None, b_n: float | None = None) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """The two 95% intervals `beyond_noise` compares for metric `name`: Wilson intervals on `*_n` for a binomial
    metric, the given `*_ci` for an interval metric; None when the metric has none or one is missing."""
    kind = get(name).noise
    if kind is Noise.BINOMIAL:
        a_ci, b_ci = wilson_interval(a, a_n), wilson_interval(b, b_n)
    elif kind is not Noise.INTERVAL:
        return None
    if a_ci is None or b_ci is None or not all(math.isfinite(float(x)) for x in (*a_ci, *b_ci)):
        return None
    return (float(a_ci[0]), float(a_ci[1])), (float(b_ci[0]), float(b_ci[1]))


def beyond_noise(name: str, a: float, b: float, a_ci: tuple[float, float] | None = None,
                 b_ci: tuple[float, float] | None = None, a_n: float | None = None, b_n: float | None = None,
                 *, drift: bool = True) -> bool:
    """Whether two values of metric `name` differ by more than its noise can explain: the one rule (see the module
    docstring). `*_ci` are the values' 95% intervals (interval metrics), `*_n` their sample sizes (binomial
    metrics). Without the data a verdict needs (no n, no interval) nothing is claimed: False. `drift=False`: the
    two values were measured interleaved in one process, so an interval metric's `rel_noise` floor (drift
    between trials) does not apply."""
    m = get(name)
    if a is None or b is None or not (math.isfinite(float(a)) and math.isfinite(float(b))):
        return False
    a, b = float(a), float(b)
    if m.noise is Noise.NONE:
        return False
    if m.noise is Noise.EXACT:
        return a != b
    floor = m.rel_noise if (m.noise is Noise.RELATIVE or drift) else 0.0
    big = max(abs(a), abs(b))
    if a == b or abs(a - b) <= floor * big:
        return False
    if m.noise is Noise.RELATIVE:
        return True
    both = intervals(name, a, b, a_ci, b_ci, a_n, b_n)
    if both is None:
        return False  # no interval measured: nothing can be claimed
    lo, hi = difference_interval(a, both[0], b, both[1])
    return lo > 0.0 or hi < 0.0
