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
CUDA_ALLOCATED = "cuda_allocated"  # peak_memory_mb is torch.cuda.max_memory_allocated (what sweep.plan predicts)
CPU_RSS_DELTA = "cpu_rss_delta"  # peak_memory_mb is the resident memory the trial added (not what sweep.plan predicts)


def memory_kind(device: str) -> str:
    """What a trial's peak_memory_mb measured on `device` ("cuda", "cuda:1", or the lorasweep.device tag,
    "cuda:NVIDIA H200" / "cpu:x86_64"): meta.json's `memory_kind`; "" when the device is not recorded."""
    if not device:
        return ""
    return CUDA_ALLOCATED if device.startswith("cuda") else CPU_RSS_DELTA


def _trim_heap() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def release() -> None:
    """Hand back what a finished trial or baseline left: Python's garbage, and PyTorch's cached CUDA blocks (they
    would count as the worker's memory after it: recycling's reference, the next trial's headroom)."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - a broken CUDA context raises here again: the trial's error already says so
        pass


def _cuda_devices() -> list[int]:
    """The CUDA devices of this process (a trial across several GPUs: all of them; its peaks are summed over them:
    each GPU's own peak, a bound on the simultaneous total)."""
    import torch

    return list(range(torch.cuda.device_count()))


def _rss_bytes() -> int:
    """Anonymous resident memory (RssAnon): tensors, heap, activations. File-backed pages (a safetensors file
    mapped while loading, shared libraries) are left out: they are page cache, not the trial's allocations."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def rss_mb() -> float:
    """The process's whole resident set (VmRSS) in MiB."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class MemoryReading:
    peak_mb: float  # GPU: max allocated; CPU: peak RSS above the baseline
    peak_reserved_mb: float  # GPU: max reserved; CPU: peak RSS of the whole process
    kind: str  # CUDA_ALLOCATED | CPU_RSS_DELTA (memory_kind of the device)

    def metrics(self) -> dict[str, float]:
        return {"peak_memory_mb": self.peak_mb, "peak_reserved_mb": self.peak_reserved_mb}


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

            for i in _cuda_devices():
                torch.cuda.synchronize(i)
                torch.cuda.reset_peak_memory_stats(i)
            torch.cuda.empty_cache()
            self._base = sum(torch.cuda.memory_allocated(i) for i in _cuda_devices())
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

    def restart_peak(self) -> None:
        """Forget the peak so far but keep the baseline: called once the model is loaded, so the transient
        spike of loading (and quantizing) weights is left out while the resident weights still count."""
        _trim_heap()
        if self.device.startswith("cuda"):
            import torch

            for i in _cuda_devices():
                torch.cuda.synchronize(i)
                torch.cuda.reset_peak_memory_stats(i)
        else:
            self._peak = _rss_bytes()

    def read(self) -> MemoryReading:
        """The peak so far (may be called inside the block)."""
        if self.device.startswith("cuda"):
            import torch

            devices = _cuda_devices()
            for i in devices:
                torch.cuda.synchronize(i)
            return MemoryReading(sum(torch.cuda.max_memory_allocated(i) for i in devices) / MIB,
                                 sum(torch.cuda.max_memory_reserved(i) for i in devices) / MIB, memory_kind(self.device))
        peak = max(self._peak, _rss_bytes())
        return MemoryReading((peak - self._base) / MIB, peak / MIB, memory_kind(self.device))

    def __exit__(self, *exc) -> None:
        self.reading = self.read()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
