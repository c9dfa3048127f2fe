"""The worker side: run one task (any backend), and the loop of a local worker process.

A task is a `TrialTask` or `BaselineTask` (protocol.py): the resolved trial config, its hash, the trial folder,
the tracking spec and tags. `execute` writes the trial folder, runs the trial, logs it to its tracker and closes the
run; a failure anywhere (a full disk included) is the trial's FAILED status, never a dead worker.

A local worker speaks protocol.py's objects over a multiprocessing Pipe, as they are. This module imports nothing
heavy at import time: the spawned child sets CUDA_VISIBLE_DEVICES before torch is loaded.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable

from sweep.orchestration.protocol import (BaselineTask, Done, Event, Placement, PruneReply, Ready, Report, Started, Stop,
                                          Task, TrialTask, Tracked, version)
from sweep.text import one_line

PR_SET_PDEATHSIG = 1  # prctl option: the signal a process receives when its parent dies (Linux)
WATCHDOG_S = 0.25  # the parent-death watchdog looks this often


def memory_mb() -> tuple[float, float]:
    """The worker's memory after a task, for recycling: (CUDA reserved, resident host memory) on a GPU, (resident
    memory, NaN) on a CPU."""
    from sweep.measure.memory import rss_mb

    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.memory_reserved() / 2**20, rss_mb()
    except ImportError:
        pass
    return rss_mb(), float("nan")


def done(wid: int, task: Task, result, *, tracked: bool = True, shipped=None) -> Done:
    """The Done a worker sends after `task`, with its memory readings."""
    device_mb, host_mb = memory_mb()
    return Done(wid, task.trial_number, result, device_mb, tracked=tracked, shipped=shipped, host_mb=host_mb,
                baseline=task.is_baseline)


def die_with_parent() -> None:
    """End this process within a fraction of a second of its parent's death, quietly: the kernel's parent-death
    signal on Linux, and a watchdog thread on the parent pid everywhere."""
    parent = os.getppid()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)

    def watch() -> None:
        while True:
            threading.Event().wait(WATCHDOG_S)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def execute(task: Task, *, wid: int, send: Callable[[Event], None], ask_prune: Callable[[int, int, dict], bool],
            where: Placement, finish_later: Callable[[Callable[[], None]], None] | None = None):
    """Run one task (a trial, or the study's baseline). Returns its TrialResult (never raises for its failure).
    `send` carries this worker's Started event; `finish_later`: see _trial. An `alone` trial (its neighbours idle,
    held so by the coordinator) may allocate the whole GPU: the per-process cap is lifted for it."""
    if isinstance(task, BaselineTask):
        return _baseline(task, where)
    from sweep.measure.gpu_share import GpuShare

    lift = task.alone and GpuShare.of(where.as_dict()).shared
    if lift:
        cap_memory(where.gpu, 1)
    try:
        result = _trial(task, wid=wid, send=send, ask_prune=ask_prune, where=where, finish_later=finish_later)
    finally:
        if lift:
            cap_memory(where.gpu, int(where.gpu_share))
    if task.alone:
        result.meta["gpu_alone"] = True
    return result


class Link:
    """The worker's end of the Pipe: sends from the main thread and the run finisher, under one lock."""

    def __init__(self, conn, wid: int):
        self.conn = conn
        self.wid = wid
        self.lock = threading.Lock()

    def send(self, msg: Event) -> None:
        with self.lock:
            self.conn.send(msg)

    def ask_prune(self, n: int, step: int, metrics: dict) -> bool:
        self.send(Report(self.wid, n, int(step), dict(metrics)))
        reply = self.conn.recv()
        return isinstance(reply, PruneReply) and reply.prune


class Finisher:
    """Closes trials' MLflow runs on a background thread, in order, then says Tracked: the coordinator tells
    Optuna only then, while the worker has already started its next trial."""

    def __init__(self, link: Link):
        import queue

        self.link = link
        self.jobs: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._serve, name="run-finisher", daemon=True)
        self.thread.start()

    def submit(self, n: int, close_run: Callable[[], None]) -> None:
        self.jobs.put((n, close_run))

    def _serve(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            n, close_run = job
            close_run()
            try:
                self.link.send(Tracked(self.link.wid, n))
            except (OSError, BrokenPipeError):
                return

    def drain(self) -> None:
        """Finish every pending run (before the worker leaves)."""
        self.jobs.put(None)
        self.thread.join()


def _run_tags(task: Task, where: Placement) -> dict[str, str]:
    from sweep.tracking import tags as T

    return {**task.tags, T.HOST: where.host, T.NODE_ID: where.node_id, T.GPU: where.gpu, T.GPU_NAME: where.gpu_name,
            T.GPU_UUID: where.gpu_uuid, T.GPU_SHARE: where.gpu_share}


def _baseline(task: BaselineTask, where: Placement):
    """The base model without an adapter, logged as the study's baseline run."""
    from sweep.baseline import run_baseline
    from sweep.config.schema import TrialConfig
    from sweep.results import TrialStatus
    from sweep.tracking import tags as T
    from sweep.tracking.mlflow_tracker import trial_tracker

    tracker = trial_tracker(task.tracking, f"baseline-{task.baseline_key}", _run_tags(task, where), params=task.config)
    result = run_baseline(TrialConfig.from_dict(task.config), placement=where.as_dict())
    try:
        tracker.log_metrics(result.metrics)
        tracker.set_tags({T.STATUS: result.status.value, T.FAILURE_REASON: result.error or "",
                          T.DEVICE: str(result.meta.get("device", ""))})
        tracker.log_dict(result.meta, "meta.json")
        tracker.finish("FAILED" if result.status is TrialStatus.FAILED else "FINISHED")
    except Exception as exc:  # tracking trouble must not lose the result
        result.meta["tracking_error"] = one_line(exc, 300)
    return result


def _trial(task: TrialTask, *, wid: int, send: Callable[[Event], None], ask_prune: Callable[[int, int, dict], bool],
           where: Placement, finish_later: Callable[[Callable[[], None]], None] | None = None):
    """Run one trial task: folder, trial, tracking. The MLflow run is opened while the trial starts (see
    MlflowTrialTracker). With `finish_later`, closing it (tags, artifacts, status) is handed to that instead of
    done here, so that the worker can start its next trial meanwhile."""
    from sweep.results import TrialResult, TrialStatus
    from sweep.tracking import tags as T
    from sweep.tracking.mlflow_tracker import trial_tracker
    from sweep.trial import run_trial

    n = task.trial_number
    out = Path(task.output_dir)
    spec = task.tracking
    t0 = time.perf_counter()
    # the folder and the config first: the run-opening thread below competes with whatever runs next
    try:
        cfg, failure = _prepare(task, out), None
    except Exception as exc:  # the trial folder could not be written (full disk, permissions): a trial failure
        cfg, failure = None, TrialResult(TrialStatus.FAILED, {}, f"{type(exc).__name__}: {one_line(exc, 300)}")
        failure.config_hash = task.config_hash
    # the run is created and its params logged on the tracker's own thread while the trial starts
    tracker = trial_tracker(spec, f"trial-{n:04d}-{task.config_hash}", _run_tags(task, where), params=task.config,
                            on_open=lambda run_id: send(Started(wid, n, run_id)))

    class Reporter:
        def report(self, step: int, metrics: dict[str, float]) -> bool:
            return ask_prune(n, step, metrics)

    result = failure or run_trial(cfg, reporter=Reporter(), tracker=tracker, output_dir=out, placement=where.as_dict(),
                                  fault=task.fault)

    def close_run() -> None:
        try:
            tracker.set_tags({T.STATUS: result.status.value, T.FAILURE_REASON: result.error or "",
                              T.DEVICE: str(result.meta.get("device", "")),
                              T.GIT_DIRTY: str(result.meta.get("git_dirty", ""))})
            if spec is None or spec.log_adapter:
                tracker.log_artifact(out)  # the whole trial folder in one call: config, result, meta, adapter
            else:
                for f in sorted(out.iterdir()) if out.is_dir() else []:
                    if f.is_file():
                        tracker.log_artifact(f)
            tracker.finish("FAILED" if result.status is TrialStatus.FAILED else "FINISHED")
        except Exception as exc:  # tracking trouble must not lose the result: the coordinator reconciles the run
            result.meta["tracking_error"] = one_line(exc, 300)

    if finish_later is None:
        close_run()
    else:
        tracker.opened()  # Started is sent before the caller says Done
        finish_later(close_run)
    # the worker's time outside the trial's own duration: folder, config, tracking, messages
    result.meta["bookkeeping_s"] = time.perf_counter() - t0 - result.duration_s
    return result


def _prepare(task: TrialTask, out: Path):
    """The trial folder with its config.yaml, and the typed config."""
    from sweep.config.hashing import write_config
    from sweep.config.schema import TrialConfig

    write_config(out, task.config)
    return TrialConfig.from_dict(task.config)


def _sigterm(_signum, _frame):
    """Stopped by the coordinator (Ctrl-C, SIGTERM, a timeout): leave at once and quietly. The coordinator has
    already failed the trial and closes its MLflow run; an exception raised here could land anywhere."""
    os._exit(143)


def worker_main(conn, worker_id: int, gpu: str | None, threads: int, check_gpu: bool = True, share: int = 1) -> None:
    """A local worker process: import torch/peft once, then run the tasks the coordinator sends."""
    die_with_parent()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the coordinator's to handle
    link = Link(conn, worker_id)
    try:
        where = _warm_up(threads, gpu, share)
        link.send(Ready(worker_id, where, version(), gpu_problem(gpu) if check_gpu else ""))
        threading.Thread(target=_preload, name="preload", daemon=True).start()
        finisher = Finisher(link)
        while True:
            msg = conn.recv()
            if isinstance(msg, Stop):
                finisher.drain()
                return
            if isinstance(msg, (TrialTask, BaselineTask)):
                n = msg.trial_number
                closing: list[Callable[[], None]] = []  # the run's closing, handed to the finisher after Done
                result = execute(msg, wid=worker_id, send=link.send, ask_prune=link.ask_prune, where=where,
                                 finish_later=None if msg.is_baseline else closing.append)
                link.send(done(worker_id, msg, result, tracked=not closing))
                for close in closing:  # only now: its Tracked must follow the Done
                    finisher.submit(n, close)
    except (EOFError, OSError, BrokenPipeError):
        return  # the coordinator is gone: leave quietly


def gpu_problem(gpu: str | None) -> str:
    """Why torch in this process cannot use the GPU(s) this worker was given ("" when it can, or when it was given
    none): a CPU wheel, a driver too old for the wheel's CUDA, CUDA_VISIBLE_DEVICES naming no usable device. A
    worker with a problem is refused at start; it never trains on the CPU instead."""
    if not gpu:
        return ""
    import warnings

    import torch

    with warnings.catch_warnings(record=True) as caught:  # torch says why in a warning (old driver, no device)
        warnings.simplefilter("always")
        usable = torch.cuda.is_available()
        count = torch.cuda.device_count() if usable else 0
    wanted = len([g for g in gpu.split(",") if g.strip()])
    if usable and count >= wanted:
        return ""
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
    why = "; ".join(dict.fromkeys(str(w.message).splitlines()[0] for w in caught)) or (
        "torch.cuda.is_available() is False" if not usable else f"it sees {count} of them")
    return (f"was given GPU {gpu} (CUDA_VISIBLE_DEVICES) but torch {torch.__version__} ({build}) cannot use it: {why} "
            "(install the CUDA build of torch for this driver: make install on the GPU host)")


def _preload() -> None:
    """What the first trial would otherwise import on its critical path: MLflow's client, transformers' Trainer."""
    try:
        import mlflow.tracking  # noqa: F401
        import transformers  # noqa: F401

        transformers.Trainer  # noqa: B018  (the lazy module imports it here)
    except Exception:  # an optional speed-up only
        pass


def cap_memory(gpu: str | None, share: int) -> None:
    """A GPU shared by `share` workers: this process may allocate its share of the memory, no more (an OOM is then
    the config's, not its neighbour's)."""
    from sweep.measure.gpu_share import memory_fraction

    fraction = memory_fraction(share) if share > 1 else 1.0
    if not gpu:
        return
    import torch

    if torch.cuda.is_available():
        torch.cuda.set_per_process_memory_fraction(fraction, 0)


def _warm_up(threads: int, gpu: str | None, share: int = 1) -> Placement:
    from sweep.quiet import quiet_libraries, quiet_transformers

    quiet_libraries()
    import torch

    if threads:
        torch.set_num_threads(threads)
    import peft  # noqa: F401  (paid once per worker, not per trial)

    import sweep.trial  # noqa: F401

    quiet_transformers()
    cap_memory(gpu, share)
    return Placement.here(gpu, threads=torch.get_num_threads(), share=share)
