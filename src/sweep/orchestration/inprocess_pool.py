"""A worker pool whose workers are a function in this process: the coordinator's own logic and cost, without training.

`InProcessPool(runner, workers=N)` hands each submitted task to `runner(task) -> TrialResult` on the next
`events()` call and reports what a real worker would say: Started, then Done (then Tracked, with
`tracked_later=True`, as a worker that closes its MLflow run in the background does). It is a harness, named as
what it is: it runs no process and no model, so dispatch, recovery, reuse, twin-waiting, timeouts and the
coordinator's cost per trial (benchmarks/scale.py) are tested and measured in milliseconds. A runner may also act
as a worker that goes wrong:

    raise LoseWorker(reason)      the worker dies with the task: Lost(reason), and a new worker says Ready
    return HANG                   the task never finishes (until the coordinator kills it: Lost)

Each worker's events come in the order a real one sends them; every worker is of this process's lorasweep.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

from sweep.orchestration.pool import admit
from sweep.orchestration.protocol import (Done, Event, Lost, Placement, PruneReply, Ready, Started, Task, Tracked,
                                          version)
from sweep.results import TrialResult


class LoseWorker(Exception):
    """Raised by a runner: its worker dies with the task (a SIGKILL, the OOM killer, a lost node)."""


HANG = object()  # returned by a runner: the task never finishes


@dataclass
class _Worker:
    wid: int
    ready: bool = False
    task: Task | None = None
    hung: bool = False


class InProcessPool:
    def __init__(self, runner: Callable[[Task], TrialResult | object], workers: int = 1, *, tracked_later: bool = False,
                 version_of_workers: str | None = None, keep_tasks: bool = True, gpus: list[str] | None = None):
        self.runner = runner
        self.workers = [_Worker(i) for i in range(workers)]
        self.tracked_later = tracked_later
        self.worker_version = version_of_workers  # None: this process's (a test gives another to see it refused)
        self.queue: deque[Event] = deque()
        self.keep_tasks = keep_tasks  # False (benchmarks/scale.py): the harness keeps nothing that grows per trial
        self.submitted: list[tuple[int, Task]] = []  # every (worker, task) handed over, in order (with keep_tasks)
        self.killed: list[tuple[int, str]] = []
        self.replies: list[tuple[int, PruneReply]] = []
        self.stopped = False
        self.gpus = gpus or [""] * workers  # the GPU each worker "has" (workers sharing one are neighbours)
        self.busy_at_submit: list[tuple[int, set[int]]] = []  # (worker, the other workers then busy), per task

    def start(self) -> None:
        for w in self.workers:
            self._say_ready(w)

    def _say_ready(self, w: _Worker) -> None:
        self.queue.append(Ready(w.wid, Placement.here(None, threads=1), self.worker_version or version()))

    def idle(self) -> list[int]:
        return [w.wid for w in self.workers if w.ready and w.task is None and not self.stopped]

    def submit(self, wid: int, task: Task) -> None:
        w = self.workers[wid]
        assert w.ready and w.task is None, f"worker {wid} is not idle"
        w.task = task
        if self.keep_tasks:
            self.submitted.append((wid, task))
            self.busy_at_submit.append((wid, {x.wid for x in self.workers if x.task is not None and x.wid != wid}))

    def reply(self, wid: int, message: PruneReply) -> None:
        self.replies.append((wid, message))

    def kill(self, wid: int, reason: str) -> None:
        w = self.workers[wid]
        self.killed.append((wid, reason))
        if w.task is not None:
            self.queue.append(Lost(wid, f"worker {wid} killed ({reason})"))
        self._replace(w)

    def _replace(self, w: _Worker) -> None:
        w.task, w.hung, w.ready = None, False, False
        self._say_ready(w)

    def describe(self, wid: int) -> str:
        return f"in-process worker {wid}"

    def neighbours(self, wid: int) -> list[int]:
        g = self.gpus[wid]
        return [i for i, x in enumerate(self.gpus) if g and x == g and i != wid]

    def events(self, timeout: float) -> list[Event]:
        for w in self.workers:
            if w.task is not None and not w.hung:
                self._run(w)
        out = []
        while self.queue:
            ev = self.queue.popleft()
            if isinstance(ev, Ready):
                ev = admit(ev)
                self.workers[ev.wid].ready = True
            out.append(ev)
        if not out:
            time.sleep(min(timeout, 0.01))  # a hung task: the coordinator's clock moves on
        return out

    def _run(self, w: _Worker) -> None:
        task = w.task
        n = task.trial_number
        self.queue.append(Started(w.wid, n, None))
        try:
            result = self.runner(task)
        except LoseWorker as exc:
            self.queue.append(Lost(w.wid, f"{self.describe(w.wid)} died ({exc})"))
            self._replace(w)
            return
        if result is HANG:
            w.hung = True
            return
        w.task = None
        later = self.tracked_later and not task.is_baseline
        self.queue.append(Done(w.wid, n, result, memory_mb=0.0, tracked=not later))
        if later:
            self.queue.append(Tracked(w.wid, n))

    def stop(self, force: bool = False) -> None:
        self.stopped = True
