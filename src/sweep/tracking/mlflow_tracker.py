"""MLflow: one parent run per sweep, one child run per trial, through MlflowClient and explicit run ids.

No global "active run" state: several worker processes write to the same store,
each to its own child run. Writes are retried when sqlite reports a lock.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any, Callable

from sweep.config.errors import ConfigError
from sweep.retry import STARTUP_DELAYS, retry_while
from sweep.tracking.base import flatten

PREFIX = "lorasweep."


def _retry(fn: Callable, *args, **kwargs):
    """sqlite reports "database is locked" under concurrent writers: back off and write again."""
    return retry_while(lambda: fn(*args, **kwargs), markers=("locked",), delays=[0.05 * 2**i for i in range(7)],
                       casefold=True)


def absolute_uri(tracking_uri: str) -> str:
    """`sqlite:///.mlflow/mlflow.db` relative to the current folder, made absolute: worker processes and
    MLflow's per-URI store cache must not depend on the working directory."""
    if tracking_uri.startswith("sqlite:///") and not tracking_uri.startswith("sqlite:////"):
        path = Path(tracking_uri[len("sqlite:///"):]).resolve()
        return f"sqlite:///{path}"
    return tracking_uri


def client(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    tracking_uri = absolute_uri(tracking_uri)
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=tracking_uri)


@contextlib.contextmanager
def init_lock(tracking_uri: str):
    """Serialise first use of a sqlite store between coordinators on one host: MLflow migrates a fresh
    database on first open, and two processes migrating at once corrupt each other's steps."""
    uri = absolute_uri(tracking_uri)
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    path = Path(uri[len("sqlite:///"):])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_experiment(tracking_uri: str, name: str, artifact_location: str) -> str:
    """The experiment id for `name`, created with its artifacts under `artifact_location/<name>`.

    Retried a few times: a coordinator on another machine may be creating the store's schema or the same
    experiment at this very moment."""
    def get_or_create() -> str:
        c = client(tracking_uri)
        exp = c.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                c.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        location = (Path(artifact_location) / name).resolve().as_uri() if "://" not in artifact_location else f"{artifact_location}/{name}"
        return c.create_experiment(name, artifact_location=location)

    racing = ("already exists", "RESOURCE_ALREADY_EXISTS", "UNIQUE constraint", "locked", "migration", "no such table",
              "duplicate")
    try:
        return retry_while(get_or_create, markers=racing, delays=STARTUP_DELAYS)
    except Exception as exc:
        text = " ".join(str(exc).split())
        raise ConfigError([f"tracking.tracking_uri: cannot use MLflow store {tracking_uri!r}: {text[:300]} "
                           "(fix the URI, or move a corrupt .mlflow/mlflow.db away; tracking=none runs without MLflow)"]) from None


def parent_run(tracking_uri: str, experiment_id: str, study: str, tags: dict[str, str], params: dict[str, Any]) -> str:
    """The sweep's parent run: reused when the study is resumed or joined by another machine."""
    c = client(tracking_uri)
    query = f"tags.`{PREFIX}role` = 'parent' and tags.`{PREFIX}study` = '{study}'"
    order = ["attributes.start_time ASC", "attributes.run_id ASC"]
    found = c.search_runs([experiment_id], filter_string=query, max_results=1, order_by=order)
    if found:
        run_id = found[0].info.run_id
        _retry(c.update_run, run_id, status="RUNNING")
    else:
        run = _retry(c.create_run, experiment_id, run_name=f"sweep:{study}",
                     tags={f"{PREFIX}role": "parent", f"{PREFIX}study": study, **tags})
        run_id = run.info.run_id
        _log_params(c, run_id, params)
        # two machines starting the same study at once may both have created one: keep the earliest
        first = c.search_runs([experiment_id], filter_string=query, max_results=1, order_by=order)[0].info.run_id
        if first != run_id:
            _retry(c.delete_run, run_id)
            run_id = first
    for k, v in tags.items():
        _retry(c.set_tag, run_id, k, v)
    return run_id


def _log_params(c, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
    for i in range(0, len(items), 90):
        _retry(c.log_batch, run_id, params=items[i : i + 90])


def finish_run(tracking_uri: str, run_id: str, status: str, tags: dict[str, str] | None = None) -> None:
    """Set tags and the terminal status (FINISHED | FAILED | KILLED) of a run, e.g. one whose worker died."""
    c = client(tracking_uri)
    for k, v in (tags or {}).items():
        _retry(c.set_tag, run_id, k, v)
    _retry(c.set_terminated, run_id, status=status)


class MlflowTrialTracker:
    """Tracker for one trial's child run (the Tracker protocol of sweep.tracking.base)."""

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, run_name: str, tags: dict[str, str]):
        self.uri = tracking_uri
        self.c = client(tracking_uri)
        run = _retry(self.c.create_run, experiment_id, run_name=run_name,
                     tags={"mlflow.parentRunId": parent_run_id, f"{PREFIX}role": "trial", **tags})
        self.run_id = run.info.run_id

    def log_params(self, params: dict) -> None:
        _log_params(self.c, self.run_id, flatten(params))

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        import math

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in metrics.items() if v is not None and math.isfinite(float(v))]
        if items:
            _retry(self.c.log_batch, self.run_id, metrics=items)

    def set_tags(self, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            _retry(self.c.set_tag, self.run_id, k, str(v))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            _retry(self.c.log_artifacts, self.run_id, str(path), artifact_path)
        elif path.exists():
            _retry(self.c.log_artifact, self.run_id, str(path), artifact_path)

    def log_dict(self, d: dict, name: str) -> None:
        _retry(self.c.log_text, self.run_id, json.dumps(d, indent=2, sort_keys=True, default=str), name)

    def finish(self, status: str) -> None:
        _retry(self.c.set_terminated, self.run_id, status=status)
