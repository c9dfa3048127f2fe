"""How sure is a measured median? A distribution-free confidence interval from the timed iterations.

For n independent timings, the number below the true median is Binomial(n, 1/2), so the
order statistics x_(j) and x_(n+1-j) bracket the median with probability
1 - 2 P(B <= j - 1). The largest j that keeps this at or above 95% gives the interval; no
assumption about the shape of the latency distribution is made. Two medians are called
indistinguishable when their intervals overlap, the same rule the report applies to
accuracies with Wilson intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95  # two-sided coverage of the median interval


@dataclass
class Timing:
    """A timed operation: median and 95th percentile, and the median's confidence interval."""

    p50_ms: float  # median, ms
    p95_ms: float  # 95th percentile, ms
    ci_low_ms: float  # lower end of the median's interval, ms
    ci_high_ms: float  # upper end of the median's interval, ms
    coverage: float  # actual coverage of [ci_low, ci_high] (>= CONFIDENCE unless n is tiny)
    n: int  # timed iterations

    def text(self) -> str:
        return f"{self.p50_ms:.3g} ms [{self.ci_low_ms:.3g}, {self.ci_high_ms:.3g}]"


def _binom_cdf_half(k: int, n: int) -> float:
    """P(B <= k) for B ~ Binomial(n, 1/2)."""
    if k < 0:
        return 0.0
    return sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n


def median_interval(samples: list[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(low, high, coverage): order statistics bracketing the median with at least `confidence` (or min/max when
    n is too small for that, with its actual coverage)."""
    x = sorted(float(s) for s in samples)
    n = len(x)
    if n == 0:
        return (math.nan, math.nan, 0.0)
    best = 1
    for j in range(1, n // 2 + 1):
        if 1.0 - 2.0 * _binom_cdf_half(j - 1, n) >= confidence:
            best = j
        else:
            break
    return (x[best - 1], x[n - best], 1.0 - 2.0 * _binom_cdf_half(best - 1, n))


def timing(samples_ms: list[float]) -> Timing:
    """Timing of a list of per-iteration milliseconds."""
    arr = np.asarray(samples_ms, dtype=float)
    lo, hi, cov = median_interval(list(arr))
    return Timing(float(np.percentile(arr, 50)), float(np.percentile(arr, 95)), lo, hi, cov, len(arr))


def overlap(a: Timing, b: Timing) -> bool:
    """True when the two medians' intervals overlap: the difference is within the timing noise."""
    return not (a.ci_high_ms < b.ci_low_ms or b.ci_high_ms < a.ci_low_ms)


def compare_text(name_a: str, a: Timing, name_b: str, b: Timing) -> str:
    """'a 12.1 ms [..] vs b 11.8 ms [..]: indistinguishable' or '... a is 1.32x slower'."""
    head = f"{name_a} {a.text()} vs {name_b} {b.text()}"
    if overlap(a, b):
        return f"{head}: indistinguishable (the 95% intervals of the medians overlap)"
    ratio = a.p50_ms / b.p50_ms if b.p50_ms else math.inf
    word = "slower" if ratio > 1 else "faster"
    factor = ratio if ratio > 1 else (1 / ratio if ratio else math.inf)
    return f"{head}: {name_a} is {factor:.2f}x {word} (intervals do not overlap)"
