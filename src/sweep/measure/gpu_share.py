"""Trials that share one GPU (sweep.workers_per_gpu > 1, fractional Ray GPUs): what keeps their figures honest.

    GpuShare.of(placement)   from a worker's placement (meta.json's `placement`): its GPU and how many workers
                             share it (`gpu_share`, 1 = a GPU of its own, 0 = the CPU)
    share.working()          held (shared) while a trial loads, trains and evaluates
    share.timing()           held (exclusive) while latency is timed: no neighbour on the same GPU trains,
                             evaluates or times meanwhile, so a latency figure is the trial's own
    memory_fraction(share)   the share of the GPU's memory each process may allocate (torch's per-process cap),
                             so an OOM is charged to the config that overran its share, not to its neighbour

The lock is a POSIX advisory lock (flock) on a file per GPU under the system's temp folder, so every worker of one
machine (local processes, Ray actors on one node) sees the same one; a lock on a CPU trial or an unshared GPU is a
no-op. Training beside a neighbour is still training on a shared GPU: `train_time_s` and throughput then include the
neighbour's load, which meta.json's `placement.gpu_share` and the run's `lorasweep.gpu_share` tag say, and the
report's summary counts such trials (docs/gpu.md).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

LOCK_DIR_ENV = "LORASWEEP_GPU_LOCK_DIR"  # where the lock files are (default: <tmp>/lorasweep-gpu-locks)


def lock_dir() -> Path:
    return Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / "lorasweep-gpu-locks")


def memory_fraction(share: int) -> float | None:
    """The per-process memory cap for a GPU shared by `share` workers (None: a GPU of its own, or the CPU)."""
    return 1.0 / share if share > 1 else None


@dataclass
class GpuShare:
    gpu: str  # the GPU id the worker was given ("" on CPU)
    share: int  # workers on that GPU (1: its own; 0: no GPU)
    waited_s: dict[str, float] = field(default_factory=dict)  # seconds spent waiting for the lock, per phase kind

    @classmethod
    def of(cls, placement: dict[str, str] | None) -> GpuShare:
        p = placement or {}
        gpu = str(p.get("gpu_uuid") or p.get("gpu") or "")
        try:
            share = int(p.get("gpu_share") or 0)
        except ValueError:
            share = 0
        return cls(gpu, share if gpu else 0)

    @property
    def shared(self) -> bool:
        return self.share > 1

    def path(self) -> Path:
        return lock_dir() / (re.sub(r"[^A-Za-z0-9_.-]", "_", self.gpu) + ".lock")

    @contextlib.contextmanager
    def _locked(self, exclusive: bool, kind: str):
        """The GPU's lock, shared or exclusive. Every phase passes a gate first and a timing holds it while it
        waits, so a timing is not starved by neighbours that keep starting new work (flock alone would keep
        granting shared locks to them)."""
        if not self.shared:
            yield
            return
        import fcntl

        path = self.path()
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+") as fh, open(path.with_suffix(".gate"), "a+") as gate:
            t0 = time.perf_counter()
            fcntl.flock(gate.fileno(), fcntl.LOCK_EX)
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            finally:
                fcntl.flock(gate.fileno(), fcntl.LOCK_UN)
            self.waited_s[kind] = self.waited_s.get(kind, 0.0) + time.perf_counter() - t0
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def working(self):
        """Loading, training, evaluating: beside the neighbours' work, never beside their latency timing."""
        return self._locked(False, "working")

    def timing(self):
        """Latency timing: alone on the GPU (waits for the neighbours' current phases to end)."""
        return self._locked(True, "timing")

    def meta(self) -> dict[str, float | int]:
        """For meta.json: the share and what waiting for the lock cost."""
        return {"gpu_share": self.share, **{f"gpu_lock_wait_{k}_s": round(v, 3) for k, v in self.waited_s.items()}}
