"""Tiny studies for the multitask tests: trials run in-process through the worker's own task runner, tracked in MLflow."""

from __future__ import annotations

from pathlib import Path

# the conftest TINY trial, with one final evaluation and one timed batch: these studies only need adapters and records
TINY = ["model=tiny_bert", "train=fast", "data.train_size=64", "data.eval_size=32", "tracking=none", "train.eval_every=0",
        "train.latency_warmup=0", "train.latency_iters=1"]


class _Conn:
    """The worker's pipe, answered in-process: nothing is ever pruned."""

    def send(self, msg: dict) -> None:
        pass

    def recv(self) -> dict:
        return {"prune": False}


def make_study(uri: str, root: Path, name: str, trials: list[list[str]]) -> list[str]:
    """Run one tiny trial per override list as trials 0, 1, ... of study `name`; returns their config hashes."""
    from sweep.config.compose import compose
    from sweep.config.hashing import config_hash
    from sweep.orchestration.worker import run_task
    from sweep.tracking import mlflow_tracker as mt

    exp = mt.ensure_experiment(uri, name, str(root / "artifacts"))
    parent = mt.parent_run(uri, exp, name, {"lorasweep.experiment": name, "lorasweep.objectives": "eval_accuracy"}, {})
    hashes = []
    for n, overrides in enumerate(trials):
        cfg = compose([*TINY, *overrides]).trial
        h = config_hash(cfg)
        tags = {"lorasweep.study": name, "lorasweep.trial_number": str(n), "lorasweep.config_hash": h,
                "lorasweep.status": "RUNNING", "lorasweep.seed": str(cfg.train.seed), "lorasweep.experiment": name}
        task = {"type": "run", "trial_number": n, "config": cfg.to_dict(), "config_hash": h,
                "output_dir": str(root / "sweeps" / name / "trials" / f"{n:04d}-{h}"),
                "mlflow": {"tracking_uri": uri, "experiment_id": exp, "parent_run_id": parent, "log_adapter": True,
                           "tags": tags}}
        run_task(_Conn(), task)
        hashes.append(h)
    return hashes
