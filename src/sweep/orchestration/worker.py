"""A long-lived worker process: imports torch/peft once, then runs trials the coordinator sends.

Protocol over a multiprocessing Pipe (dicts):
  coordinator -> worker: {"type": "run", ...task...} | {"type": "prune_reply", "prune": bool} | {"type": "stop"}
  worker -> coordinator: {"type": "ready"} | {"type": "started", "trial_number", "run_id"}
                         | {"type": "report", "trial_number", "step", "metrics"} | {"type": "done", "trial_number", "result"}
This module imports nothing heavy at import time: the spawned child sets
CUDA_VISIBLE_DEVICES before torch is loaded.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path


class PipeReporter:
    """Sends intermediate evaluations to the coordinator and waits for its prune decision."""

    def __init__(self, conn, trial_number: int):
        self.conn = conn
        self.trial_number = trial_number

    def report(self, step: int, metrics: dict[str, float]) -> bool:
        self.conn.send({"type": "report", "trial_number": self.trial_number, "step": step, "metrics": metrics})
        reply = self.conn.recv()
        return bool(reply.get("prune"))


def _sigterm(_signum, _frame):
    raise KeyboardInterrupt("terminated by the coordinator")


def worker_main(conn, worker_id: int, gpu: str | None, threads: int) -> None:
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the coordinator's to handle
    from sweep.quiet import quiet_libraries

    quiet_libraries()
    import torch

    if threads:
        torch.set_num_threads(threads)
    import peft  # noqa: F401  (paid once per worker, not per trial)

    import sweep.trial  # noqa: F401

    conn.send({"type": "ready", "worker_id": worker_id, "pid": os.getpid(), "threads": torch.get_num_threads()})
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if msg.get("type") == "stop":
            return
        if msg.get("type") == "run":
            try:
                run_task(conn, msg)
            except KeyboardInterrupt:
                return


def run_task(conn, task: dict) -> None:
    import yaml

    from sweep.config.schema import TrialConfig
    from sweep.results import TrialResult, TrialStatus
    from sweep.tracking.base import NullTracker
    from sweep.trial import run_trial

    n = task["trial_number"]
    out = Path(task["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(task["config"], sort_keys=False))
    tracker = NullTracker()
    ml = task.get("mlflow")
    if ml:
        from sweep.tracking.mlflow_tracker import MlflowTrialTracker

        tracker = MlflowTrialTracker(ml["tracking_uri"], ml["experiment_id"], ml["parent_run_id"],
                                     run_name=f"trial-{n:04d}-{task['config_hash']}", tags=ml["tags"])
        conn.send({"type": "started", "trial_number": n, "run_id": tracker.run_id})
        tracker.log_params(task["config"])
    else:
        conn.send({"type": "started", "trial_number": n, "run_id": None})
    status_done = False
    try:
        cfg = TrialConfig.from_dict(task["config"])
        result = run_trial(cfg, reporter=PipeReporter(conn, n), tracker=tracker, output_dir=out,
                           max_trainable_params=task.get("max_trainable_params"), fault=task.get("fault"))
    except KeyboardInterrupt:
        if ml:
            tracker.set_tags({"lorasweep.status": "FAILED", "lorasweep.failure_reason": "interrupted"})
            tracker.finish("KILLED")
        raise
    except Exception as exc:  # config rebuilt badly: still a trial failure, never a dead worker
        result = TrialResult(TrialStatus.FAILED, {}, f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
        result.config_hash = task["config_hash"]
    if ml:
        try:
            tracker.set_tags({"lorasweep.status": result.status.value, "lorasweep.failure_reason": result.error or "",
                              "lorasweep.device": str(result.meta.get("device", "")),
                              "lorasweep.git_dirty": str(result.meta.get("git_dirty", ""))})
            tracker.log_artifact(out / "config.yaml")
            tracker.log_artifact(out / "result.json")
            if (out / "meta.json").exists():
                tracker.log_dict(result.meta, "environment.json")
            if (out / "adapter").is_dir() and ml.get("log_adapter", True):
                tracker.log_artifact(out / "adapter", "adapter")
            tracker.finish("FAILED" if result.status is TrialStatus.FAILED else "FINISHED")
            status_done = True
        except Exception as exc:  # tracking trouble must not lose the result
            result.meta["tracking_error"] = " ".join(str(exc).split())[:300]
    conn.send({"type": "done", "trial_number": n, "result": result.to_dict(), "tracked": status_done})
