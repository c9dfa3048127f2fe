"""The worker pool: where trials run. One interface, three implementations: local processes (local_pool.py), Ray
actors (ray_pool.py), and functions in this process (inprocess_pool.py: the coordinator's own logic and cost, tested
and measured without training anything).

The coordinator hands a task to an idle worker and reads events back (protocol.py); it never knows whether a worker
is a process on this machine, an actor on another node or a function.

    pool.start()                         begin starting the workers (returns at once)
    pool.idle() -> [wid]                 workers that are ready and have no task
    pool.submit(wid, task)               run a TrialTask or BaselineTask on that worker
    pool.reply(wid, PruneReply)          answer a Report (the pruner's decision)
    pool.events(timeout) -> [Event]      what happened since the last call (waits up to `timeout`): Ready, Started,
                                         Report, Done (the worker is free), Tracked (its run is closed), Lost
    pool.kill(wid, reason)               stop a worker now (a trial over its time limit); a Lost event follows
    pool.describe(wid) -> str            the worker in words, for progress lines and failure reasons
    pool.stop(force)                     stop every worker (force: do not wait for running trials)

Every pool passes a worker's Ready through `admit` (a worker of another lorasweep version is refused) and keeps
each worker's events in the order it sent them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Protocol

from sweep.config.errors import ConfigError
from sweep.gpus import visible_gpus
from sweep.orchestration.protocol import (Done, Event, Lost, PruneReply, Ready, Report, Started, Task, Tracked,
                                          VersionMismatch, check_version, version)

__all__ = ["Done", "Event", "Lost", "Ready", "Report", "Started", "Tracked", "WorkerPool", "WorkerStartupError",
           "Recycler", "admit", "plan_workers"]


class WorkerStartupError(RuntimeError):
    """A worker died again and again before it was ready, or runs another lorasweep: the environment is broken, not
    a trial."""


class WorkerPool(Protocol):
    def start(self) -> None: ...
    def idle(self) -> list[int]: ...
    def submit(self, wid: int, task: Task) -> None: ...
    def reply(self, wid: int, message: PruneReply) -> None: ...
    def events(self, timeout: float) -> list[Event]: ...
    def kill(self, wid: int, reason: str) -> None: ...
    def describe(self, wid: int) -> str: ...
    def neighbours(self, wid: int) -> list[int]: ...  # the workers sharing its GPU (sweep.workers_per_gpu)
    def stop(self, force: bool = False) -> None: ...


def admit(ready: Ready, coordinator_version: str | None = None) -> Ready:
    """A worker that said Ready may take tasks only if it runs this coordinator's lorasweep and can use what it was
    given (a GPU torch cannot see is a broken environment, not a reason to train on the CPU)."""
    try:
        check_version(ready.version, coordinator_version or version())
    except VersionMismatch as exc:
        raise WorkerStartupError(f"worker {ready.wid} on {ready.where.host}: {exc}") from None
    if ready.problem:
        raise WorkerStartupError(f"worker {ready.wid} on {ready.where.host}: {ready.problem}")
    return ready


@dataclass
class Recycler:
    """Replace a long-lived worker between trials when its memory after a trial has grown past its own baseline
    (the reading after its first trial) by `growth_mb`, or after `after` trials: LoRA trials in one process
    fragment the allocator (CUDA or malloc) and the worker would creep towards an OOM."""

    growth_mb: float | None
    after: int | None
    baseline: dict[int, float] = field(default_factory=dict)
    trials: dict[int, int] = field(default_factory=dict)

    host_baseline: dict[int, float] = field(default_factory=dict)

    def due(self, wid: int, memory_mb: float, *, host_mb: float = float("nan"), error: str | None = None,
            baseline: bool = False) -> str | None:
        """After a task of worker `wid`: the reason to replace it now, or None. `memory_mb`: its memory after the
        task (CUDA reserved on a GPU, resident memory on a CPU); `host_mb`: a GPU worker's resident host memory
        (watched too: a host-side leak creeps to the OOM killer as surely); `error`: the task's failure reason (a
        broken CUDA context ends the worker whatever its memory); `baseline`: the task was the study's baseline,
        which neither counts as a trial nor sets the reference (its base model's cache is freed, but a worker's
        reference is taken after its first trial)."""
        from sweep.faults import broke_cuda

        if broke_cuda(error):
            return "its CUDA context is broken (every later trial in it would fail)"
        if baseline:
            return None
        self.trials[wid] = self.trials.get(wid, 0) + 1
        if self.after and self.trials[wid] >= self.after:
            return f"ran {self.trials[wid]} trials (sweep.recycle_after={self.after})"
        for what, reading, ref in (("memory", memory_mb, self.baseline), ("host memory", host_mb, self.host_baseline)):
            if reading != reading:  # not read
                continue
            base = ref.setdefault(wid, reading)
            if self.growth_mb is not None and reading - base > self.growth_mb:
                return (f"{what} grew {reading - base:.0f} MiB past its baseline of {base:.0f} MiB "
                        f"(sweep.recycle_growth_mb={self.growth_mb:g})")
        return None

    def reset(self, wid: int) -> None:
        self.baseline.pop(wid, None)
        self.host_baseline.pop(wid, None)
        self.trials.pop(wid, None)


def plan_workers(workers: Any, workers_per_gpu: int, threads_per_worker: int,
                 gpus: list[str] | None = None, gpus_per_worker: int = 1) -> list[tuple[str | None, int]]:
    """(gpu ids or None, torch threads) per local worker: one per visible GPU (x workers_per_gpu), one per
    `gpus_per_worker` GPUs ("0,1": a trial placed across both), or CPU workers sharing the cores."""
    gpus = visible_gpus() if gpus is None else gpus
    cores = os.cpu_count() or 1
    if gpus and gpus_per_worker > 1:
        groups = [",".join(gpus[i:i + gpus_per_worker]) for i in range(0, len(gpus) - gpus_per_worker + 1, gpus_per_worker)]
        if not groups:
            raise ConfigError([f"sweep.gpus_per_worker: {gpus_per_worker} GPUs per worker, but {len(gpus)} visible "
                               f"({', '.join(gpus)}): lower it, or make more GPUs visible (CUDA_VISIBLE_DEVICES)"])
        if workers != "auto":
            groups = groups[: int(workers)]
        threads = threads_per_worker or max(1, cores // len(groups))
        return [(g, threads) for g in groups]
    if gpus:
        slots = [g for g in gpus for _ in range(workers_per_gpu)]
        if workers != "auto":
            slots = [slots[i % len(slots)] for i in range(int(workers))]
        threads = threads_per_worker or max(1, cores // len(slots))
        return [(g, threads) for g in slots]
    n = max(1, cores // 2) if workers == "auto" else int(workers)
    threads = threads_per_worker or max(1, cores // n)
    return [(None, threads)] * n
