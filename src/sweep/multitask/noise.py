"""How sure is a measured median? A distribution-free confidence interval from the timed iterations.

The interval is sweep.noise.median_interval (exact binomial order statistics, no assumption
about the shape of the latency distribution; none with fewer than 6 timings). Two medians are called
indistinguishable when their intervals overlap, the same rule the report applies to
accuracies with Wilson intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sweep.noise import median_coverage, median_interval, median_rank_bounds


@dataclass
class Timing:
    """A timed operation: median and 95th percentile, and the median's confidence interval."""

    p50_ms: float  # median, ms
    p95_ms: float  # 95th percentile, ms
    ci_low_ms: float  # lower end of the median's interval, ms
    ci_high_ms: float  # upper end of the median's interval, ms
    coverage: float  # exact coverage of [ci_low, ci_high] (>= 95%; 0 with fewer than 6 samples: no interval)
    n: int  # timed iterations

    def text(self) -> str:
        return f"{self.p50_ms:.3g} ms [{self.ci_low_ms:.3g}, {self.ci_high_ms:.3g}]"


def timing(samples_ms: list[float]) -> Timing:
    """Timing of a list of per-iteration milliseconds."""
    arr = np.asarray(samples_ms, dtype=float)
    lo, hi = median_interval(list(arr))
    bounds = median_rank_bounds(len(arr))
    cov = median_coverage(len(arr), bounds[0]) if bounds else 0.0
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
