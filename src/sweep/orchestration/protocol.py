"""What a coordinator and its workers say to each other: frozen dataclasses that both ends import.

The local pipe and Ray send these objects as they are (pickled); nothing is parsed from a dict on either side.
A new task field is one field here, read where it is used.

    coordinator -> worker              worker -> coordinator (each names its worker id)
    TrialTask | BaselineTask           Ready(placement, version)   imported torch/peft, idle
    PruneReply(trial_number, prune)    Started(trial_number, run_id)   its MLflow run is open (None: no tracking)
    Stop()                             Report(trial_number, step, metrics)   an intermediate evaluation: a PruneReply follows
                                       Done(trial_number, result, memory_mb, tracked[, shipped])   the worker is free
                                       Tracked(trial_number)   the run of a Done with tracked=False is closed
    (pool-made)                        Lost(reason)   the worker died or was stopped with a task

A worker whose lorasweep differs from its coordinator's (a Ray node with another checkout) is refused at start:
`check_version` names both. This module imports nothing heavy: the spawned child sets CUDA_VISIBLE_DEVICES
before torch loads.
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    from sweep.results import TrialResult
    from sweep.tracking.base import TrialTrackingSpec


# ---------------------------------------------------------------- the version both ends must run
@functools.lru_cache(maxsize=1)
def version() -> str:
    """This process's lorasweep: the package version and a digest of its source files (two checkouts with one
    version number but other code differ here)."""
    from sweep import __version__

    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return f"{__version__}+{h.hexdigest()[:12]}"


class VersionMismatch(RuntimeError):
    """A worker runs another lorasweep than its coordinator: refused before it takes a task."""


def check_version(worker: str, coordinator: str) -> None:
    if worker != coordinator:
        raise VersionMismatch(f"worker runs lorasweep {worker}, its coordinator {coordinator}: install the same checkout "
                              "on every node (docs/ray-and-security.md); on one machine, the source changed while the "
                              "sweep ran: rerun the same command to resume with the new code")


# ---------------------------------------------------------------- where a worker runs
@dataclass(frozen=True)
class Placement:
    host: str
    pid: str
    gpu: str = ""  # the GPU ids it was given ("" on CPU)
    node_id: str = ""  # Ray node id ("" locally)
    threads: str = ""  # torch CPU threads
    gpu_name: str = ""  # the GPU's model as CUDA reports it ("NVIDIA H200"); "" on CPU
    gpu_uuid: str = ""  # its UUID: the same device whatever order CUDA and the driver number GPUs in
    gpu_share: str = ""  # workers sharing that GPU ("1": its own; "" on CPU): sweep.measure.gpu_share

    @classmethod
    def here(cls, gpu: str | None, node_id: str = "", threads: int | str = "", share: int = 1) -> Placement:
        """This process; with a GPU given, the model and UUID CUDA reports for it (torch must be imported: a worker
        calls this after its warm-up)."""
        name = uuid = ""
        if gpu:
            import sys

            torch = sys.modules.get("torch")
            try:
                if torch is not None and torch.cuda.is_available():
                    props = torch.cuda.get_device_properties(0)
                    name, uuid = props.name, str(getattr(props, "uuid", "") or "")
            except Exception:  # noqa: BLE001 - a GPU torch cannot use is the worker's own refusal (gpu_problem)
                pass
        return cls(socket.gethostname(), str(os.getpid()), gpu or "", node_id, str(threads), name, uuid,
                   str(share) if gpu else "")

    def as_dict(self) -> dict[str, str]:
        """For meta.json's `placement` and the run's tags."""
        return asdict(self)


# ---------------------------------------------------------------- coordinator -> worker
@dataclass(frozen=True)
class TrialTask:
    trial_number: int
    config: dict  # the resolved trial config (TrialConfig.to_dict()): what config_hash hashes
    config_hash: str
    output_dir: str  # the trial folder (a Ray actor runs in a node-local one and ships the files back)
    tags: dict[str, str]  # the MLflow run's tags
    tracking: TrialTrackingSpec | None = None  # None: tracking off
    fault: str | None = None  # test hook: a fault to inject (sweep.faults)
    alone: bool = False  # run with the GPU to itself: no neighbour works meanwhile, no per-process memory cap

    @property
    def is_baseline(self) -> bool:
        return False


@dataclass(frozen=True)
class BaselineTask:
    """The base model without an adapter, measured once per baseline key."""

    baseline_key: str
    config: dict
    tags: dict[str, str]
    tracking: TrialTrackingSpec | None = None
    trial_number: int = -1  # a baseline is no Optuna trial

    @property
    def alone(self) -> bool:
        return False  # a baseline runs like any task (only a retry asks for its GPU to itself)

    @property
    def is_baseline(self) -> bool:
        return True


Task = Union[TrialTask, BaselineTask]


@dataclass(frozen=True)
class PruneReply:
    trial_number: int
    prune: bool


@dataclass(frozen=True)
class Stop:
    """Finish closing runs, then leave."""


# ---------------------------------------------------------------- worker -> coordinator
@dataclass(frozen=True)
class Ready:
    wid: int
    where: Placement
    version: str = ""
    problem: str = ""  # why this worker cannot take tasks (a GPU torch cannot use): refused at start, with this reason


@dataclass(frozen=True)
class Started:
    wid: int
    trial_number: int
    run_id: str | None


@dataclass(frozen=True)
class Report:
    wid: int
    trial_number: int
    step: int
    metrics: dict[str, float]


@dataclass(frozen=True)
class Shipped:
    """A trial folder's files sent back by a worker that cannot write the coordinator's folder (Ray)."""

    files: dict[str, bytes] = field(default_factory=dict)
    artifacts: dict[str, str] | None = None  # the MLflow run and where its artifacts are


@dataclass(frozen=True)
class Done:
    wid: int
    trial_number: int
    result: TrialResult
    memory_mb: float = float("nan")  # the worker's memory after it: CUDA reserved on a GPU, resident on a CPU
    tracked: bool = True  # False: the worker is free again, its run is still being closed (a Tracked event follows:
    #                       always after this Done, a pool keeps each worker's events in the order it sent them)
    shipped: Shipped | None = None  # Ray: the trial folder's files, written into the real folder by the pool
    host_mb: float = float("nan")  # a GPU worker's resident host memory after it (recycling watches both)
    baseline: bool = False  # the task was the study's baseline (recycling takes no reference from it)


@dataclass(frozen=True)
class Tracked:
    wid: int
    trial_number: int  # its MLflow run is closed: the trial may be told to Optuna


@dataclass(frozen=True)
class Lost:
    wid: int
    reason: str  # one line: why the worker is gone (exit code, signal, node)


Event = Union[Ready, Started, Report, Done, Tracked, Lost]
