"""MLflow primitives (store, experiment, terminal status) and the tracker of one trial's child run.

No global "active run" state: several worker processes write to the same store, each to
its own child run through MlflowClient and an explicit run id. Writes are retried when
sqlite reports a lock. A trial's metrics and tags are buffered and written with one
`log_batch` call at a time (every few seconds during training, and before the run is
closed), so the tracker costs a few calls per trial, not one per value. A trial's run is
opened on a background thread while the trial starts (nothing of it waits on the store).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

from sweep.config.errors import ConfigError
from sweep.names import folder_for
from sweep.retry import STARTUP_DELAYS, retry_while
from sweep.text import one_line
from sweep.tracking import tags as T
from sweep.tracking.base import TrialTrackingSpec, flatten

BATCH = 900  # MLflow accepts at most 1000 metrics+params+tags per log_batch
FLUSH_EVERY_S = 10.0  # buffered curve points reach the store at least this often


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


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (None for other stores)."""
    uri = absolute_uri(uri)
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def check_sqlite_file(path: Path, timeout_s: float = 5.0) -> str | None:
    """Why a sqlite database file cannot be used (None if it can), without writing: an existing file must be a
    readable, unlocked sqlite database; a missing one needs a writable folder to be created in."""
    import sqlite3

    if path.exists():
        try:
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout_s)
            try:
                con.execute("select count(*) from sqlite_master").fetchone()
            finally:
                con.close()
        except sqlite3.Error as exc:
            return f"{path} is not a usable sqlite database ({one_line(exc, 120)})"
        return None
    return None if writable(path.parent) else f"cannot create {path}: its folder cannot be created or written"


def writable(folder: Path) -> bool:
    """Whether files can be created in `folder` (or in the folders that would be made for it), probed with a
    temporary file in the nearest existing one, removed at once (access() is no answer for root)."""
    import tempfile

    folder = Path(folder).resolve()
    while not folder.exists():
        folder = folder.parent
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".lorasweep-probe-")
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True


def check_store(tracking_uri: str, artifact_location: str) -> None:
    """Before anything is written: the MLflow store can be used (one-line ConfigError naming the key and the fix)."""
    uri = absolute_uri(tracking_uri)
    path = sqlite_path(uri)
    fix = "(fix tracking.tracking_uri, move a corrupt store away, or run without MLflow: tracking=none)"
    if path is not None:
        problem = check_sqlite_file(path)
        if problem:
            raise ConfigError([f"tracking.tracking_uri: {problem} {fix}"])
    elif uri.startswith(("http://", "https://")):
        import urllib.request

        try:
            urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=10).read()
        except OSError as exc:
            raise ConfigError([f"tracking.tracking_uri: no MLflow server answers at {uri} ({one_line(exc, 120)}) {fix}"]) from None
    elif "://" not in uri or uri.startswith("file:"):
        folder = Path(uri[len("file://"):] if uri.startswith("file://") else uri.removeprefix("file:"))
        if not writable(folder):
            raise ConfigError([f"tracking.tracking_uri: {folder} cannot be written {fix}"])
    if "://" not in artifact_location and not writable(Path(artifact_location)):
        raise ConfigError([f"tracking.artifact_location: {artifact_location} cannot be written (set "
                           "tracking.artifact_location to a writable folder)"])


def client(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    tracking_uri = absolute_uri(tracking_uri)
    path = sqlite_path(tracking_uri)
    if path is not None:
        from sweep import sqlite

        sqlite.tune()
        path.parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=tracking_uri)


@contextlib.contextmanager
def init_lock(tracking_uri: str):
    """Serialise first use of a sqlite store between coordinators on one host: MLflow migrates a fresh
    database on first open, and two processes migrating at once corrupt each other's steps."""
    path = sqlite_path(tracking_uri)
    if path is None:
        yield
        return
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_experiment(tracking_uri: str, name: str, artifact_location: str, folder: str | None = None) -> str:
    """The experiment id for `name`, created with its artifacts under `artifact_location/<folder>` (`folder`: the
    study name, else `name`, either made one safe folder by sweep/names.py, as an experiment name may contain /;
    an HTTP tracking server keeps them in its own artifact store instead, `mlflow server --serve-artifacts`,
    unless `artifact_location` is a URI) and tagged as a fine-tuning experiment (the UI then opens on its runs, not on the
    GenAI overview).

    Retried a few times: a coordinator on another machine may be creating the store's schema or the same
    experiment at this very moment."""
    def get_or_create() -> str:
        c = client(tracking_uri)
        exp = c.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                c.restore_experiment(exp.experiment_id)
            if exp.tags.get(T.EXPERIMENT_KIND) != T.KIND_FINETUNING:
                c.set_experiment_tag(exp.experiment_id, T.EXPERIMENT_KIND, T.KIND_FINETUNING)
            return exp.experiment_id
        sub = folder_for(folder if folder is not None else name)  # never a path out of artifact_location
        if "://" in artifact_location:
            location = f"{artifact_location}/{sub}"
        elif tracking_uri.startswith(("http://", "https://")):
            location = None  # a folder here is no place for a shared server's artifacts: the server's own store
        else:
            location = (Path(artifact_location) / sub).resolve().as_uri()
        return c.create_experiment(name, artifact_location=location, tags={T.EXPERIMENT_KIND: T.KIND_FINETUNING})

    racing = ("already exists", "RESOURCE_ALREADY_EXISTS", "UNIQUE constraint", "locked", "migration", "no such table",
              "duplicate")
    try:
        return retry_while(get_or_create, markers=racing, delays=STARTUP_DELAYS)
    except Exception as exc:
        raise ConfigError([f"tracking.tracking_uri: cannot use MLflow store {tracking_uri!r}: {one_line(exc, 300)} "
                           "(fix the URI, or move a corrupt .mlflow/mlflow.db away; tracking=none runs without MLflow)"]) from None


@contextlib.contextmanager
def using_tracking_uri(uri: str):
    """`mlflow.search_runs` reads the global tracking URI: point it at `uri` for the call, then restore it."""
    import mlflow

    before = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before) if before else mlflow.set_tracking_uri("")


def search_runs(tracking_uri: str, experiment_ids: list[str], filter_string: str, *, frame: bool = True):
    """Every run matching `filter_string` (MLflow pages through them): a DataFrame (`tags.*`, `params.*`,
    `metrics.*` columns) or, with frame=False, the Run objects."""
    import mlflow

    with using_tracking_uri(absolute_uri(tracking_uri)):
        return mlflow.search_runs(experiment_ids, filter_string=filter_string, max_results=100_000,
                                  output_format="pandas" if frame else "list")


def log_params(c, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
    for i in range(0, len(items), BATCH):
        _retry(c.log_batch, run_id, params=items[i : i + BATCH])


def log_metrics(tracking_uri: str, run_id: str, metrics: dict[str, float]) -> None:
    """Final values (step 0) written into an existing run, e.g. one recovered after its worker died."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, 0) for k, v in metrics.items() if v is not None and math.isfinite(float(v))]
    for i in range(0, len(items), BATCH):
        _retry(client(tracking_uri).log_batch, run_id, metrics=items[i : i + BATCH])


def finish_run(tracking_uri: str, run_id: str, status: str, tags: dict[str, str] | None = None) -> None:
    """Set tags and the terminal status (FINISHED | FAILED | KILLED) of a run, e.g. one whose worker died."""
    from mlflow.entities import RunTag

    c = client(tracking_uri)
    if tags:
        _retry(c.log_batch, run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
    _retry(c.set_terminated, run_id, status=status)


class MlflowTrialTracker:
    """Tracker for one trial's child run (the Tracker protocol of sweep.tracking.base).

    The run is opened (created, then its params logged) on a background thread, off the trial's critical path:
    the trial starts at once and its metrics are buffered meanwhile. `on_open(run_id)` is called from that thread
    as soon as the run exists. Whatever needs the run (a flush, an artifact, the closing, `opened()`) waits for
    it; a periodic flush during training never waits. A run that could not be opened keeps its metrics
    buffered and raises the opening's error from `flush`/`finish`, where the caller records it (the coordinator
    reconciles the run)."""

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, run_name: str, tags: dict[str, str],
                 params: dict | None = None, on_open: Callable[[str], None] | None = None):
        self.run_id: str | None = None
        self.c = None  # the MLflow client, made on the opening thread
        self._metrics: list = []
        self._tags: dict[str, str] = {}
        self._flushed = time.monotonic()
        self._error: BaseException | None = None
        run_tags = {T.PARENT_RUN: parent_run_id, T.ROLE: T.ROLE_TRIAL, **tags}
        self._opening = threading.Thread(target=self._open, name="run-opener", daemon=True,
                                         args=(tracking_uri, experiment_id, run_name, run_tags, params, on_open))
        self._opening.start()

    def _open(self, tracking_uri, experiment_id, run_name, tags, params, on_open) -> None:
        try:
            self.c = client(tracking_uri)
            run_id = _retry(self.c.create_run, experiment_id, run_name=run_name, tags=tags).info.run_id
            self.run_id = run_id
            if on_open is not None:
                on_open(run_id)
            if params:
                log_params(self.c, run_id, flatten(params))
        except BaseException as exc:  # noqa: BLE001 - raised again where the run is needed
            self._error = exc

    def opened(self) -> str | None:
        """Wait until the run is open: its id, or None if it could not be opened."""
        self._opening.join()
        return self.run_id if self._error is None else None

    def _open_run(self) -> str:
        self._opening.join()
        if self._error is not None:
            raise self._error
        return self.run_id

    def log_params(self, params: dict) -> None:
        run_id = self._open_run()  # first: the client exists once the run is open
        log_params(self.c, run_id, flatten(params))

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._metrics += [Metric(k, float(v), now, step or 0) for k, v in metrics.items()
                          if v is not None and math.isfinite(float(v))]
        if (time.monotonic() - self._flushed >= FLUSH_EVERY_S and not self._opening.is_alive()
                and self._error is None):
            self.flush()

    def set_tags(self, tags: dict[str, str]) -> None:
        self._tags.update({k: str(v) for k, v in tags.items()})

    def flush(self) -> None:
        """Write the buffered metrics and tags (a few log_batch calls)."""
        from mlflow.entities import RunTag

        run_id = self._open_run()
        tags = [RunTag(k, v) for k, v in self._tags.items()]
        metrics = self._metrics
        self._metrics, self._tags, self._flushed = [], {}, time.monotonic()
        while metrics or tags:
            m, metrics = metrics[:BATCH], metrics[BATCH:]
            t, tags = tags[: BATCH - len(m)], tags[BATCH - len(m):]
            _retry(self.c.log_batch, run_id, metrics=m, tags=t)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        run_id, path = self._open_run(), Path(path)
        if path.is_dir():
            _retry(self.c.log_artifacts, run_id, str(path), artifact_path)
        elif path.exists():
            _retry(self.c.log_artifact, run_id, str(path), artifact_path)

    def log_dict(self, d: dict, name: str) -> None:
        run_id = self._open_run()
        _retry(self.c.log_text, run_id, json.dumps(d, indent=2, sort_keys=True, default=str), name)

    def finish(self, status: str) -> None:
        self.flush()
        _retry(self.c.set_terminated, self._open_run(), status=status)  # flush has waited for the run


def trial_tracker(spec: TrialTrackingSpec | None, run_name: str, tags: dict[str, str], params: dict | None = None,
                  on_open: Callable[[str | None], None] | None = None):
    """The tracker a worker uses for one trial: MLflow when the task carries a tracking spec, else the null one
    (which has no run: `on_open(None)` at once)."""
    if not spec:
        from sweep.tracking.base import NullTracker

        if on_open is not None:
            on_open(None)
        return NullTracker()
    return MlflowTrialTracker(spec.tracking_uri, spec.experiment_id, spec.parent_run_id, run_name, tags,
                              params=params, on_open=on_open)
