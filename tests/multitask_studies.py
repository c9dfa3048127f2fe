"""Tiny studies for the multitask tests: trials run in-process through the worker's own task runner, tracked in MLflow."""

from __future__ import annotations

from pathlib import Path

# the conftest TINY trial, with one final evaluation and one timed batch: these studies only need adapters and records
TINY = ["model=tiny_bert", "train=fast", "data.train_size=64", "data.eval_size=32", "tracking=none", "train.eval_every=0",
        "train.latency_warmup=0", "train.latency_min_iters=1", "train.latency_max_iters=1"]


def make_study(uri: str, root: Path, name: str, trials: list[list[str]]) -> list[str]:
    """Run one tiny trial per override list as trials 0, 1, ... of study `name` (the worker's own `execute`, in this
    process), tracked under the study's parent run; returns their config hashes."""
    from sweep.config.compose import compose
    from sweep.config.hashing import config_hash
    from sweep.orchestration.protocol import Placement, TrialTask
    from sweep.orchestration.worker import execute
    from sweep.tracking import tags as T
    from sweep.tracking.sweep_run import SweepTracking

    tracking = SweepTracking(tracking_uri=uri, artifact_location=str(root / "artifacts"), log_adapter=True, study=name,
                             parent_tags={T.EXPERIMENT: name, T.OBJECTIVES: "eval_accuracy"}, parent_params={})
    tracking.open()
    hashes = []
    for n, overrides in enumerate(trials):
        cfg = compose([*TINY, *overrides]).trial
        h = config_hash(cfg)
        tags = {T.STUDY: name, T.TRIAL_NUMBER: str(n), T.CONFIG_HASH: h, T.STATUS: "RUNNING", T.SEED: str(cfg.train.seed),
                T.EXPERIMENT: name}
        task = TrialTask(n, cfg.to_dict(), h, str(root / "sweeps" / name / "trials" / f"{n:04d}-{h}"), tags,
                         tracking.trial_spec)
        result = execute(task, wid=0, send=lambda ev: None, ask_prune=lambda *a: False, where=Placement.here(None))
        assert result.status.value == "COMPLETE", result.error
        hashes.append(h)
    return hashes
