"""The local backend: long-lived worker processes on this machine (spawned, one per GPU or CPU share).

Workers import torch/peft once, then run trials over a Pipe (protocol.py's objects, sent as they are).
A worker that dies (SIGKILL, the OOM killer) becomes a Lost event and is replaced;
one that dies three times before it was ever ready is a broken environment
(WorkerStartupError). Workers end within a fraction of a second of this process's
death (see worker.die_with_parent), so nothing outlives a killed coordinator.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any

from sweep.orchestration.pool import Recycler, WorkerStartupError, admit
from sweep.orchestration.protocol import Done, Event, Lost, PruneReply, Ready, Stop, Task
from sweep.orchestration.worker import worker_main

STOP_WAIT_S = 15  # a stopping worker gets this long to finish its current call before it is killed
QUIET_TRACKER = "ignore:resource_tracker:UserWarning"


@dataclass
class _Proc:
    wid: int
    gpu: str | None
    threads: int
    proc: Any = None
    conn: Any = None
    ready: bool = False
    busy: bool = False
    deaths: int = 0  # consecutive deaths before reaching ready
    recycle: str | None = None  # reason to replace it once its current trial is done


class LocalPool:
    def __init__(self, plan: list[tuple[str | None, int]], recycler: Recycler | None = None, log=print,
                 check_gpu: bool = True):
        self.procs = [_Proc(i, gpu, threads) for i, (gpu, threads) in enumerate(plan)]
        self.shares = {g: sum(1 for q in self.procs if q.gpu == g) for g in {p.gpu for p in self.procs} if g}
        self.check_gpu = check_gpu  # a worker refuses a GPU torch cannot use (see worker.gpu_problem)
        self.recycler = recycler or Recycler(None, None)
        self.log = log
        self.stopping = False

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        for p in self.procs:
            self._spawn(p)

    def _spawn(self, p: _Proc) -> None:
        # a worker stopped mid-trial leaves a semaphore to multiprocessing's resource tracker, which frees it and
        # says so on stderr: the tracker inherits this process's -W options
        if QUIET_TRACKER not in sys.warnoptions:
            sys.warnoptions.append(QUIET_TRACKER)
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        p.proc = ctx.Process(target=worker_main, args=(child, p.wid, p.gpu, p.threads, self.check_gpu,
                                                       self.shares.get(p.gpu, 1)),
                             daemon=True, name=f"lorasweep-worker-{p.wid}")
        p.proc.start()
        child.close()
        p.conn, p.ready, p.busy = parent, False, False

    def _end(self, p: _Proc) -> None:
        if p.proc is not None and p.proc.is_alive():
            p.proc.kill()
            p.proc.join(5)

    def stop(self, force: bool = False) -> None:
        self.stopping = True
        started = [p for p in self.procs if p.proc is not None and p.proc.pid is not None]
        for p in started:
            if not p.proc.is_alive():
                continue
            try:
                if force:
                    p.proc.terminate()
                else:
                    p.conn.send(Stop())
            except (OSError, BrokenPipeError):
                pass  # it is dying anyway: joined and killed below
        deadline = time.time() + STOP_WAIT_S
        for p in started:
            p.proc.join(max(0.1, deadline - time.time()))
            self._end(p)

    # ---------------------------------------------------------------- work
    def idle(self) -> list[int]:
        return [p.wid for p in self.procs if p.ready and not p.busy and not self.stopping]

    def submit(self, wid: int, task: Task) -> None:
        p = self.procs[wid]
        p.busy = True
        p.conn.send(task)

    def reply(self, wid: int, message: PruneReply) -> None:
        try:
            self.procs[wid].conn.send(message)
        except (OSError, BrokenPipeError):
            pass  # the worker died after asking: its Lost event follows

    def kill(self, wid: int, reason: str) -> None:
        self._end(self.procs[wid])

    def neighbours(self, wid: int) -> list[int]:
        g = self.procs[wid].gpu
        return [p.wid for p in self.procs if g and p.gpu == g and p.wid != wid]

    def describe(self, wid: int) -> str:
        return f"worker {wid}" + (f" (GPU {self.procs[wid].gpu})" if self.procs[wid].gpu else "")

    def events(self, timeout: float) -> list[Event]:
        out: list[Event] = []
        ready = wait([p.conn for p in self.procs] + [p.proc.sentinel for p in self.procs], timeout=timeout)
        for p in self.procs:
            if p.conn in ready:
                try:
                    while p.conn.poll():
                        out += self._message(p, p.conn.recv())
                except (EOFError, OSError):
                    pass  # the process is gone: seen below
            if not p.proc.is_alive():
                out += self._died(p)
        return out

    def _message(self, p: _Proc, ev: Event) -> list[Event]:
        """The pool's own bookkeeping of a worker's event; the event itself is passed on as it came."""
        if isinstance(ev, Ready):
            ev = admit(ev)
            p.ready, p.deaths = True, 0
        elif isinstance(ev, Done):
            p.busy = False
            reason = self.recycler.due(p.wid, ev.memory_mb, host_mb=ev.host_mb, error=ev.result.error,
                                       baseline=ev.baseline)
            if reason and not self.stopping:
                self.log(f"{self.describe(p.wid)}: replaced between trials: {reason}")
                return [ev, *self._replace(p)]
        return [ev]

    def _replace(self, p: _Proc) -> list[Event]:
        """Stop the worker (it closes its pending runs first) and start a new one; returns what it still said
        (the Tracked of a run it closed on the way out)."""
        said: list[Event] = []
        try:
            p.conn.send(Stop())
            p.proc.join(STOP_WAIT_S)
            while p.conn.poll():
                said.append(p.conn.recv())
        except (EOFError, OSError, BrokenPipeError):
            pass
        self._end(p)
        self.recycler.reset(p.wid)
        self._spawn(p)
        return said

    def _died(self, p: _Proc) -> list[Event]:
        code = p.proc.exitcode
        p.deaths = 0 if p.ready else p.deaths + 1
        if p.deaths >= 3:
            raise WorkerStartupError(f"{self.describe(p.wid)} died {p.deaths} times while starting (exit code {code}); "
                                     "run `python -m sweep.trial` to see the error")
        why = f"{self.describe(p.wid)} died (exit code {code}" + (
            ", SIGKILL: killed or out of memory)" if code == -signal.SIGKILL else ")")
        was_busy = p.busy
        self.recycler.reset(p.wid)
        if self.stopping:
            p.busy = False
            return [Lost(p.wid, why)] if was_busy else []
        self._spawn(p)
        return [Lost(p.wid, why)] if was_busy else []
