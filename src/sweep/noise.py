"""Noise: 95% intervals for the measured metrics, and the one rule deciding whether two values differ.

  wilson_interval   a proportion observed on n examples (accuracy)
  median_interval   the median of timed iterations: distribution-free, from the order statistics
  mean_interval     a mean with its standard error (eval loss over examples)
  beyond_noise      two values of a declared metric differ by more than its noise (sweep/metrics.py)
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


def beyond_noise(name: str, a: float, b: float, a_ci: tuple[float, float] | None = None,
                 b_ci: tuple[float, float] | None = None, a_n: float | None = None, b_n: float | None = None) -> bool:
    """Whether two values of metric `name` differ by more than its noise can explain (see the module docstring).
    `*_ci` are the values' 95% intervals (interval metrics), `*_n` their sample sizes (binomial metrics)."""
    m = get(name)
    if not (math.isfinite(a) and math.isfinite(b)):
        return False
    if m.noise is Noise.NONE:
        return False
    if m.noise is Noise.EXACT:
        return a != b
    if m.noise is Noise.BINOMIAL:
        lo_a, hi_a = wilson_interval(a, a_n)
        lo_b, hi_b = wilson_interval(b, b_n)
        if math.isnan(lo_a) or math.isnan(lo_b):
            return False
        return not (lo_a <= b <= hi_a or lo_b <= a <= hi_b)
    big = max(abs(a), abs(b))
    if big == 0 or abs(a - b) <= m.rel_noise * big:
        return False
    if m.noise is Noise.INTERVAL:
        if a_ci is None or b_ci is None or not all(map(math.isfinite, (*a_ci, *b_ci))):
            return False  # no interval measured: nothing can be claimed
        return a_ci[1] < b_ci[0] or b_ci[1] < a_ci[0]
    return True
