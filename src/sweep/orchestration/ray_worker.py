"""The worker side of the Ray backend: one long-lived actor that runs trials (see ray_pool.py for the other side).

A threaded actor (several calls at once) so the coordinator can answer a pruning question, or check that the actor
still answers, while a trial runs. Calls, all plain actor methods (so they work through Ray Client too):

    ready() -> placement        import torch/peft/sweep.trial once; host, pid, Ray node id, GPU ids, torch threads
    run(task)                   start the trial in a thread of the actor and return at once
    next_event(n, i) -> dict    the i-th message of trial n, waiting for it: started | report | done
    reply(n, prune)             the pruner's answer to trial n's last report
    ping() -> True              liveness

Messages are those of worker.py's local protocol; `done` also carries the trial folder's files (the actor writes
to a node-local temporary folder: the coordinator's `sweeps/` may be on another machine) and where MLflow keeps
the trial's artifacts. Asking for message i again is safe: a call lost on the network can be repeated.
Nothing heavy is imported at import time.
"""

from __future__ import annotations

import queue
import shutil
import tempfile
import threading
from pathlib import Path

from sweep.orchestration import shipped
from sweep.orchestration.worker import execute, memory_mb, placement
from sweep.text import one_line


class TrialActor:
    def __init__(self, threads: int):
        self.threads = max(1, int(threads))
        self.where: dict[str, str] = {}
        self.cond = threading.Condition()
        self.trial: int | None = None
        self.messages: list[dict] = []
        self.replies: queue.Queue = queue.Queue()

    def ready(self) -> dict[str, str]:
        import ray

        from sweep.quiet import quiet_libraries

        quiet_libraries()
        import torch

        torch.set_num_threads(self.threads)
        import peft  # noqa: F401  (paid once per actor, not per trial)

        import sweep.trial  # noqa: F401

        gpu = ",".join(str(g) for g in ray.get_gpu_ids())
        self.where = {**placement(gpu, ray.get_runtime_context().get_node_id()), "threads": str(torch.get_num_threads())}
        return self.where

    def ping(self) -> bool:
        return True

    def run(self, task: dict) -> None:
        with self.cond:
            self.trial, self.messages = task["trial_number"], []
        threading.Thread(target=self._work, args=(task,), name=f"trial-{task['trial_number']}", daemon=True).start()

    def next_event(self, number: int, index: int) -> dict:
        with self.cond:
            self.cond.wait_for(lambda: self.trial == number and len(self.messages) > index)
            return self.messages[index]

    def reply(self, number: int, prune: bool) -> None:
        self.replies.put((number, prune))

    # ---------------------------------------------------------------- the trial's thread
    def _send(self, msg: dict) -> None:
        with self.cond:
            self.messages.append(msg)
            self.cond.notify_all()

    def _ask(self, number: int, step: int, metrics: dict) -> bool:
        self._send({"type": "report", "trial_number": number, "step": step, "metrics": metrics})
        while True:
            n, prune = self.replies.get()
            if n == number:
                return bool(prune)

    def _work(self, task: dict) -> None:
        n = task["trial_number"]
        folder = Path(tempfile.mkdtemp(prefix=f"lorasweep-trial-{n:04d}-"))
        run_id: list[str | None] = [None]

        def send(msg: dict) -> None:
            if msg.get("type") == "started":
                run_id[0] = msg.get("run_id")
            self._send(msg)

        try:
            result = execute({**task, "output_dir": str(folder)}, send=send, ask_prune=self._ask, where=self.where)
            files = shipped.pack(folder)
        except BaseException as exc:  # noqa: BLE001 - the coordinator must hear of it, or it waits for ever
            from sweep.results import TrialResult, TrialStatus

            result, files = TrialResult(TrialStatus.FAILED, {}, f"worker: {type(exc).__name__}: {one_line(exc, 300)}"), {}
            result.config_hash = task.get("config_hash", "")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self._send({"type": "done", "trial_number": n, "result": result.to_dict(), "memory_mb": memory_mb(),
                    "files": files, "artifacts": _artifacts(task.get("tracking"), run_id[0])})


def _artifacts(spec: dict | None, run_id: str | None) -> dict[str, str] | None:
    """The MLflow run of the trial and where its artifacts are (None without tracking)."""
    if not spec or not run_id:
        return None
    out = {"run_id": run_id, "tracking_uri": spec["tracking_uri"], "artifact_uri": ""}
    try:
        from sweep.tracking.mlflow_tracker import client

        out["artifact_uri"] = client(spec["tracking_uri"]).get_run(run_id).info.artifact_uri
    except Exception:  # the store is unreachable right now: the run id still finds the artifacts later
        pass
    return out

