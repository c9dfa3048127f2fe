"""Inference latency per call, after warm-up, with device synchronisation on GPU, and an interval for its median.

Timing stops as soon as the median is known well enough: after `min_iters` calls, once the
~95% distribution-free interval of the median is within `rel_ci` of it (half-width), or at
`max_iters` calls.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from sweep.noise import median_interval


@dataclass
class Latency:
    p50_ms: float
    p95_ms: float
    ci_low_ms: float  # ~95% interval of the median (nan with fewer than 6 calls)
    ci_high_ms: float
    samples_ms: list[float]

    def metrics(self, prefix: str) -> dict[str, float]:
        """`<prefix>_p50_ms`, its interval bounds and `<prefix>_p95_ms`."""
        return {f"{prefix}_p50_ms": self.p50_ms, f"{prefix}_p95_ms": self.p95_ms,
                f"{prefix}_p50_ms_ci_low": self.ci_low_ms, f"{prefix}_p50_ms_ci_high": self.ci_high_ms}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def time_once(fn: Callable[[], object], device: str) -> float:
    """Milliseconds of one call of `fn` (synchronised before and after on GPU)."""
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return (time.perf_counter() - t0) * 1e3


def time_calls(fn: Callable[[], object], *, device: str, warmup: int, min_iters: int, max_iters: int,
               rel_ci: float) -> Latency:
    """Run `fn` `warmup` times untimed, then time calls until the median's interval is tight (see module doc)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    samples: list[float] = []
    while len(samples) < max_iters:
        samples.append(time_once(fn, device))
        if len(samples) >= min_iters:
            lo, hi = median_interval(samples)
            median = float(np.median(samples))
            if math.isfinite(lo) and (hi - lo) / 2 <= rel_ci * median:
                break
    lo, hi = median_interval(samples)
    arr = np.asarray(samples)
    return Latency(float(np.percentile(arr, 50)), float(np.percentile(arr, 95)), lo, hi, samples)
