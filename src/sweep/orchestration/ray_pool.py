"""The Ray backend: long-lived worker actors across a Ray cluster (the worker side is ray_worker.py).

Each actor reserves a GPU share (or CPUs on a cluster without GPUs); Ray places the actors across the nodes
(SPREAD) and sets their CUDA_VISIBLE_DEVICES. The pool keeps a few calls in flight per actor (its `ready`, the
`next_event` of its trial, a `ping`) and waits on all of them at once. What can go wrong, and what happens:

  - the actor's process dies (SIGKILL, the OOM killer, a crash) or its node vanishes: Ray fails the calls with
    ActorDiedError; the trial is Lost with the reason and the node, the actor is replaced. A replacement that the
    cluster has no room for stays pending and starts when there is room; the sweep goes on meanwhile.
  - the actor cannot be reached for a moment (ActorUnavailableError): it is pinged until it answers (the trial's
    messages are asked for again: they are numbered) or Ray declares it dead.
  - the actor answers no ping for `sweep.ray.unresponsive_s`: it is killed and its trial Lost.
  - an actor dies three times before it was ever ready: the node's environment is broken (WorkerStartupError).

The trial folder on this machine is written from the files the actor ships back (shipped.py) before Done.
Actors are owned by this process: they end with it, so nothing outlives a killed coordinator.
"""

from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweep.orchestration import shipped
from sweep.orchestration.pool import Recycler, WorkerStartupError, admit
from sweep.orchestration.protocol import Done, Event, Lost, PruneReply, Ready, Task, TrialTask
from sweep.orchestration.ray_connect import connect, plan_actors
from sweep.orchestration.ray_worker import TrialActor
from sweep.text import one_line

PING_EVERY_S = 5.0  # a ready actor is asked whether it is alive this often
RETRY_UNREACHABLE_S = 1.0  # an unreachable actor is pinged again after this
PENDING_LOG_S = 60.0  # an actor not placed after this long is reported as waiting for room
CONCURRENCY = 4  # calls an actor serves at once: run, next_event, reply, ping


@dataclass
class _Slot:
    wid: int
    handle: Any = None
    generation: int = 0  # bumped at every replacement: calls of an older actor are ignored
    where: Any = None  # its Placement once ready
    ready: bool = False
    busy: bool = False
    task: Task | None = None
    index: int = 0  # number of the trial's next message
    out: set[str] = field(default_factory=set)  # kinds of call in flight: ready, event, ping
    last_ping: float = 0.0
    last_answer: float = 0.0
    unreachable: bool = False
    created: float = 0.0
    pending_logged: bool = False
    deaths: int = 0  # consecutive deaths before reaching ready


class RayPool:
    def __init__(self, cfg, recycler: Recycler | None = None, log=print, check_gpu: bool = True):
        self.cfg = cfg  # SweepConfig
        self.check_gpu = check_gpu  # actors refuse a GPU torch cannot use (see worker.gpu_problem)
        self.recycler = recycler or Recycler(None, None)
        self.log = log
        self.slots: list[_Slot] = []
        self.calls: dict[Any, tuple[int, int, str]] = {}  # ObjectRef -> (worker id, generation, kind)
        self.stopping = False
        self.ray = None

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        c = self.cfg
        self.ray = connect(c.ray.address, c.ray.namespace)
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        plan = plan_actors(c.workers, c.workers_per_gpu, c.ray.cpus_per_worker, c.threads_per_worker,
                           self.ray.cluster_resources(), c.gpus_per_worker)
        self.actor = self.ray.remote(TrialActor).options(max_concurrency=CONCURRENCY, max_restarts=0,
                                                         scheduling_strategy="SPREAD", **plan.resources)
        self.threads = plan.threads
        self.share = c.workers_per_gpu if plan.resources.get("num_gpus", 0) < 1 else 1  # actors per GPU (fractional)
        self.log(f"Ray cluster at {c.ray.address}: {len(nodes)} node(s); {plan.describe()}")
        if plan.count > plan.capacity:
            self.log(f"sweep.workers={c.workers} asks for more workers than the cluster holds ({plan.capacity}): "
                     "the others start when it has room")
        self.slots = [_Slot(i) for i in range(plan.count)]
        for s in self.slots:
            self._create(s)

    def _create(self, s: _Slot) -> None:
        s.generation += 1
        s.handle = self.actor.remote(s.wid, self.threads, self.check_gpu, self.share)
        s.ready = s.busy = s.unreachable = s.pending_logged = False
        s.task, s.created, s.out = None, time.time(), set()
        self._call(s, "ready", "ready")

    def _call(self, s: _Slot, kind: str, method: str, *args) -> None:
        self.calls[getattr(s.handle, method).remote(*args)] = (s.wid, s.generation, kind)
        s.out.add(kind)

    def _kill(self, s: _Slot) -> None:
        try:
            self.ray.kill(s.handle, no_restart=True)
        except Exception:  # already gone
            pass

    def stop(self, force: bool = False) -> None:
        """Kill every actor and disconnect; a cluster this process joined keeps running (a `local` one ends)."""
        self.stopping = True
        if self.ray is None:
            return
        for s in self.slots:
            self._kill(s)
        self.calls.clear()
        self.ray.shutdown()

    # ---------------------------------------------------------------- work
    def idle(self) -> list[int]:
        return [s.wid for s in self.slots if s.ready and not s.busy and not s.unreachable and not self.stopping]

    def submit(self, wid: int, task: Task) -> None:
        s = self.slots[wid]
        s.busy, s.task, s.index = True, task, 0
        if isinstance(task, TrialTask):  # a baseline has no folder
            _start_folder(Path(task.output_dir), task.config)
        self._call(s, "run", "run", task)
        self._next(s)

    def _next(self, s: _Slot) -> None:
        self._call(s, "event", "next_event", s.task.trial_number, s.index)

    def reply(self, wid: int, message: PruneReply) -> None:
        s = self.slots[wid]
        if s.task is not None:
            self._call(s, "reply", "reply", message)

    def kill(self, wid: int, reason: str) -> None:
        self._kill(self.slots[wid])  # its calls fail next: Lost and a replacement follow

    def neighbours(self, wid: int) -> list[int]:
        """Ray places fractional-GPU actors itself and does not say which share one GPU: none are known, so a retry
        "alone" runs like any trial there (docs/gpu.md)."""
        return []

    def describe(self, wid: int) -> str:
        w = self.slots[wid].where
        if w is None:
            return f"worker {wid}"
        gpu = f", GPU {w.gpu}" if w.gpu else ""
        return f"worker {wid} on node {w.node_id[:8]} (host {w.host}{gpu})"

    # ---------------------------------------------------------------- events
    def events(self, timeout: float) -> list[Event]:
        out: list[Event] = self._watch()
        refs = list(self.calls)
        if not refs:
            time.sleep(timeout)
            return out
        done, _ = self.ray.wait(refs, num_returns=1, timeout=timeout)
        if done:
            done, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in done:
            wid, generation, kind = self.calls.pop(ref)
            try:
                value, error = self.ray.get(ref), None
            except Exception as exc:  # noqa: BLE001 - every failure of a call is looked at below
                value, error = None, exc
            s = self.slots[wid]
            if generation == s.generation and not self.stopping:
                out += self._answer(s, kind, value, error)
        return out

    def _answer(self, s: _Slot, kind: str, value, error) -> list[Event]:
        from ray.exceptions import ActorUnavailableError, RayActorError

        s.out.discard(kind)
        if kind in ("run", "reply"):
            return []  # failures show in the trial's next_event
        if isinstance(error, ActorUnavailableError):
            s.unreachable = True  # pinged (or asked to be ready) again until it answers or is declared dead
            return []
        if isinstance(error, RayActorError):
            return self._died(s, death_reason(error))
        if error is not None:
            cause = getattr(error, "cause", None) or error
            what = "failed to start" if kind == "ready" else "failed"
            return self._died(s, f"{what}: {type(cause).__name__}: {one_line(cause, 200)}", kill=True)
        s.last_answer, s.unreachable = time.time(), False
        if kind == "ready":
            ready = admit(value)
            s.ready, s.where, s.deaths = True, ready.where, 0
            return [ready]
        if kind == "ping":
            if s.busy and "event" not in s.out:
                self._next(s)  # a message call lost while unreachable: ask again (messages are numbered)
            return []
        return self._message(s, value)

    def _message(self, s: _Slot, ev: Event) -> list[Event]:
        if not isinstance(ev, Done):
            s.index += 1
            self._next(s)
            return [ev]
        task = s.task
        s.busy, s.task = False, None
        if isinstance(task, TrialTask) and ev.shipped is not None:  # the files into the real trial folder, here
            result = shipped.unpack(ev.result, ev.shipped.files, Path(task.output_dir), ev.shipped.artifacts)
            ev = dataclasses.replace(ev, result=result, shipped=None)
        reason = self.recycler.due(s.wid, ev.memory_mb, host_mb=ev.host_mb, error=ev.result.error, baseline=ev.baseline)
        if reason:
            self.log(f"{self.describe(s.wid)}: replaced between trials: {reason}")
            self._kill(s)
            self.recycler.reset(s.wid)
            self._create(s)
        return [ev]

    def _watch(self) -> list[Event]:
        """Pings, actors that stopped answering, actors still waiting for room."""
        out: list[Event] = []
        now = time.time()
        for s in self.slots:
            if self.stopping:
                break
            if not s.ready:
                if s.unreachable and "ready" not in s.out and now - s.last_ping >= RETRY_UNREACHABLE_S:
                    s.last_ping = now
                    self._call(s, "ready", "ready")
                if not s.pending_logged and now - s.created > PENDING_LOG_S:
                    s.pending_logged = True
                    self.log(f"worker {s.wid}: not started after {PENDING_LOG_S:.0f} s: waiting for the cluster to have "
                             "room for it (or still importing torch)")
                continue
            limit = self.cfg.ray.unresponsive_s
            if now - s.last_answer > limit:
                out += self._died(s, f"stopped answering: no reply for {now - s.last_answer:.0f} s "
                                     f"(sweep.ray.unresponsive_s={limit:g}); killed", kill=True)
            elif "ping" not in s.out and now - s.last_ping >= (RETRY_UNREACHABLE_S if s.unreachable else PING_EVERY_S):
                s.last_ping = now
                self._call(s, "ping", "ping")
        return out

    def _died(self, s: _Slot, why: str, kill: bool = False) -> list[Event]:
        reason = f"{self.describe(s.wid)} {why}"
        was_busy = s.busy
        if kill:
            self._kill(s)
        if not s.ready and "node was lost" not in why:
            s.deaths += 1
            if s.deaths >= 3:
                raise WorkerStartupError(f"{reason}, {s.deaths} times while starting: every node needs the same Python "
                                         "environment (docs/ray-and-security.md); `python -m sweep.trial` shows the error")
        self.recycler.reset(s.wid)
        if not was_busy:
            self.log(f"{reason}; replacing it")
        s.where = None
        self._create(s)
        return [Lost(s.wid, reason)] if was_busy else []


def _start_folder(folder: Path, config: dict) -> None:
    """The trial folder exists from the start, as with local workers (a lost trial's folder is marked incomplete)."""
    from sweep.config.hashing import write_config

    try:
        write_config(folder, config)
    except OSError:
        pass  # a full disk: the result cannot be written either, and says so


def death_reason(exc: BaseException | None) -> str:
    """One line from Ray's account of an actor's death: its node was lost, its process exited, or it was killed."""
    text = str(exc or "")
    node = re.search(r"node (?:was|has been) terminated[^:\n]*:?\s*([^\n]*)", text) or re.search(r"node[^\n]*(?:died|dead)[^\n]*", text)
    if node:
        detail = node.group(1).strip() if node.groups() else node.group(0).strip()
        return f"died: its node was lost ({detail[:150]})" if detail else "died: its node was lost"
    if "ray.kill" in text:
        return "died: killed by the sweep (ray.kill)"
    exit_ = re.search(r"Worker exit type: (\S+) Worker exit detail: ([^.\n]*)", text)
    if exit_:
        return (f"died: its process exited ({exit_.group(1)}: {exit_.group(2).strip()[:120]}; a SIGKILL, the OOM killer "
                "or a crash)")
    return f"died: {one_line(text, 200)}"
