"""Inference latency per batch, after warm-up, with device synchronisation on GPU."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass
class Latency:
    p50_ms: float
    p95_ms: float
    samples_ms: list[float]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def time_batches(fn: Callable[[], object], *, device: str, warmup: int, iters: int) -> Latency:
    """Run `fn` `warmup` times untimed, then time `iters` calls (synchronised on GPU)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    samples = []
    for _ in range(iters):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        samples.append((time.perf_counter() - t0) * 1e3)
    arr = np.asarray(samples)
    return Latency(float(np.percentile(arr, 50)), float(np.percentile(arr, 95)), samples)
