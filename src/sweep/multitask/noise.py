"""How sure is a measured median? A distribution-free confidence interval from the timed iterations.

The interval is sweep.noise.median_interval (exact binomial order statistics, no assumption
about the shape of the latency distribution; none with fewer than 6 timings). Whether two medians
differ is decided by the one noise rule, sweep.noise.beyond_noise, for a latency median
(`latency_p50_ms`): the 95% interval of their difference, built from the two intervals, must exclude
zero. Both sides are timed interleaved in one process (sweep.multitask.measure), so the rule's
drift floor between separate trials does not apply (drift=False).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sweep.noise import beyond_noise, median_coverage, median_interval, median_rank_bounds

METRIC = "latency_p50_ms"  # the declared metric whose noise rule a median of timed calls follows


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


def differ(a: Timing, b: Timing) -> bool:
    """Whether the two medians differ beyond the timing noise: `sweep.noise.beyond_noise` on their intervals (timed
    interleaved, so no drift floor). False when either has no interval (fewer than 6 timings): nothing is claimed."""
    return beyond_noise(METRIC, a.p50_ms, b.p50_ms, (a.ci_low_ms, a.ci_high_ms), (b.ci_low_ms, b.ci_high_ms), drift=False)


def compare_text(name_a: str, a: Timing, name_b: str, b: Timing) -> str:
    """'a 12.1 ms [..] vs b 11.8 ms [..]: indistinguishable' or '... a is 1.32x slower'."""
    head = f"{name_a} {a.text()} vs {name_b} {b.text()}"
    if not differ(a, b):
        return f"{head}: indistinguishable (the 95% interval of the difference of the medians contains zero)"
    ratio = a.p50_ms / b.p50_ms if b.p50_ms else math.inf
    word = "slower" if ratio > 1 else "faster"
    factor = ratio if ratio > 1 else (1 / ratio if ratio else math.inf)
    return f"{head}: {name_a} is {factor:.2f}x {word} (the 95% interval of the difference excludes zero)"
