"""The worker side of the Ray backend: one long-lived actor that runs trials (see ray_pool.py for the other side).

A threaded actor (several calls at once) so the coordinator can answer a pruning question, or check that the actor
still answers, while a trial runs. Calls, all plain actor methods (so they work through Ray Client too):

    ready() -> Ready            import torch/peft/sweep.trial once; host, pid, Ray node id, GPU ids, torch threads
    run(task)                   start the task in a thread of the actor and return at once
    next_event(n, i) -> Event   the i-th event of trial n, waiting for it: Started | Report | Done
    reply(PruneReply)           the pruner's answer to trial n's last report
    ping() -> True              liveness

Events are protocol.py's objects, as the local workers send them; Done also carries the trial folder's files
(`Shipped`: the actor writes to a node-local temporary folder, the coordinator's `sweeps/` may be on another
machine) and where MLflow keeps the trial's artifacts. Asking for event i again is safe: a call lost on the network
can be repeated.
Nothing heavy is imported at import time.
"""

from __future__ import annotations

import dataclasses
import queue
import shutil
import tempfile
import threading
from pathlib import Path

from sweep.orchestration import shipped
from sweep.orchestration.protocol import (Event, Placement, PruneReply, Ready, Report, Shipped, Started, Task,
                                          TrialTask, version)
from sweep.orchestration.worker import cap_memory, done, execute, gpu_problem
from sweep.text import one_line


class TrialActor:
    def __init__(self, wid: int, threads: int, check_gpu: bool = True, share: int = 1):
        self.wid = wid
        self.check_gpu = check_gpu
        self.share = share  # actors sharing its GPU (num_gpus = 1/share)
        self.threads = max(1, int(threads))
        self.where: Placement | None = None
        self.cond = threading.Condition()
        self.trial: int | None = None
        self.messages: list[Event] = []
        self.replies: queue.Queue = queue.Queue()

    def ready(self) -> Ready:
        import ray

        from sweep.quiet import quiet_libraries

        quiet_libraries()
        import torch

        torch.set_num_threads(self.threads)
        import peft  # noqa: F401  (paid once per actor, not per trial)

        import sweep.trial  # noqa: F401

        gpu = ",".join(str(g) for g in ray.get_gpu_ids())
        cap_memory(gpu, self.share)
        self.where = Placement.here(gpu, ray.get_runtime_context().get_node_id(), torch.get_num_threads(), self.share)
        return Ready(self.wid, self.where, version(), gpu_problem(gpu) if self.check_gpu else "")

    def ping(self) -> bool:
        return True

    def run(self, task: Task) -> None:
        with self.cond:
            self.trial, self.messages = task.trial_number, []
        threading.Thread(target=self._work, args=(task,), name=f"trial-{task.trial_number}", daemon=True).start()

    def next_event(self, number: int, index: int) -> Event:
        with self.cond:
            self.cond.wait_for(lambda: self.trial == number and len(self.messages) > index)
            return self.messages[index]

    def reply(self, message: PruneReply) -> None:
        self.replies.put(message)

    # ---------------------------------------------------------------- the trial's thread
    def _send(self, ev: Event) -> None:
        with self.cond:
            self.messages.append(ev)
            self.cond.notify_all()

    def _ask(self, number: int, step: int, metrics: dict) -> bool:
        self._send(Report(self.wid, number, int(step), dict(metrics)))
        while True:
            reply = self.replies.get()
            if reply.trial_number == number:
                return reply.prune

    def _work(self, task: Task) -> None:
        n = task.trial_number
        folder = Path(tempfile.mkdtemp(prefix=f"lorasweep-trial-{n:04d}-"))
        run_id: list[str | None] = [None]

        def send(ev: Event) -> None:
            if isinstance(ev, Started):
                run_id[0] = ev.run_id
            self._send(ev)

        try:
            local = dataclasses.replace(task, output_dir=str(folder)) if isinstance(task, TrialTask) else task
            result = execute(local, wid=self.wid, send=send, ask_prune=self._ask, where=self.where)
            files = shipped.pack(folder)
        except BaseException as exc:  # noqa: BLE001 - the coordinator must hear of it, or it waits for ever
            from sweep.results import TrialResult, TrialStatus

            result, files = TrialResult(TrialStatus.FAILED, {}, f"worker: {type(exc).__name__}: {one_line(exc, 300)}"), {}
            result.config_hash = task.config_hash if isinstance(task, TrialTask) else ""
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self._send(done(self.wid, task, result, shipped=Shipped(files, _artifacts(task.tracking, run_id[0]))))


def _artifacts(spec, run_id: str | None) -> dict[str, str] | None:
    """The MLflow run of the trial and where its artifacts are (None without tracking). `spec`: the task's
    TrialTrackingSpec."""
    if spec is None or not run_id:
        return None
    out = {"run_id": run_id, "tracking_uri": spec.tracking_uri, "artifact_uri": ""}
    try:
        from sweep.tracking.mlflow_tracker import client

        out["artifact_uri"] = client(spec.tracking_uri).get_run(run_id).info.artifact_uri
    except Exception:  # the store is unreachable right now: the run id still finds the artifacts later
        pass
    return out

