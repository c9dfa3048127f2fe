"""Peak memory of a trial: CUDA allocator peaks on GPU, sampled resident memory on CPU.

On CPU there is no allocator counter to reset, and ru_maxrss is a process-lifetime
maximum, useless in a long-lived worker. So freed heap is handed back to the OS
(malloc_trim), the resident set is read as a baseline, and a thread samples it
every few milliseconds; the trial's figure is the peak minus that baseline.
"""

from __future__ import annotations

import ctypes
import gc
import threading
from dataclasses import dataclass

MIB = 1024 * 1024


def _trim_heap() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE")


@dataclass
class MemoryReading:
    peak_mb: float  # GPU: max allocated; CPU: peak RSS above the baseline
    peak_reserved_mb: float  # GPU: max reserved; CPU: peak RSS of the whole process
    kind: str  # "cuda_allocated" | "cpu_rss_delta"


class PeakMemory:
    """Context manager measuring the peak memory of the enclosed block."""

    def __init__(self, device: str, interval_s: float = 0.005):
        self.device = device
        self.interval_s = interval_s
        self.reading: MemoryReading | None = None
        self._stop = threading.Event()
        self._peak = 0
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "PeakMemory":
        _trim_heap()
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        else:
            self._base = _rss_bytes()
            self._peak = self._base
            self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, _rss_bytes())
            self._stop.wait(self.interval_s)

    def read(self) -> MemoryReading:
        """The peak so far (may be called inside the block)."""
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            return MemoryReading(torch.cuda.max_memory_allocated() / MIB, torch.cuda.max_memory_reserved() / MIB, "cuda_allocated")
        peak = max(self._peak, _rss_bytes())
        return MemoryReading((peak - self._base) / MIB, peak / MIB, "cpu_rss_delta")

    def __exit__(self, *exc) -> None:
        self.reading = self.read()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
