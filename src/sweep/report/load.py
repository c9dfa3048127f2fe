"""Read a study's runs from MLflow into one pandas DataFrame, one row per trial.

The sweep writes one MLflow experiment per study (named after it), one parent run
(`lorasweep.role=parent`) and one child run per Optuna trial (`lorasweep.role=trial`)
with the flattened trial config as params, the final metrics, and `lorasweep.*` tags
(trial number, config hash, status, failure reason, device, reuse). Columns of the
frame: the trial columns below, every config param by its dotted name (`lora.r`,
values parsed back from MLflow's strings), and every declared metric by name.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sweep import metrics as mt
from sweep.text import one_line
from sweep.tracking import tags as T
from sweep.tracking.mlflow_tracker import absolute_uri, check_sqlite_file, search_runs, sqlite_path

DEFAULT_TRACKING_URI = "sqlite:///.mlflow/mlflow.db"
TRIAL_COLUMNS = ("trial", "config_hash", "status", "failure_reason", "reused_from", "device", "seed", "git_sha",
                 "arm", "baseline_key", "host", "node_id", "gpu", "gpu_share", "run_id", "run_name", "run_status",
                 "start_time")
# what a trial takes from its baseline run: the merged model computes exactly what the base model computes
FROM_BASELINE = ("merged_latency_p50_ms", "merged_latency_p95_ms", "merged_latency_p50_ms_ci_low",
                 "merged_latency_p50_ms_ci_high", "merged_latency_per_token_ms", "merged_latency_per_token_ms_ci_low",
                 "merged_latency_per_token_ms_ci_high")
STATUSES = ("COMPLETE", "PRUNED", "FAILED", T.INFEASIBLE)
DEFAULT_GROUP_BY = ("lora.targets",)
DEFAULT_OBJECTIVES = ("eval_accuracy",)
SCHEDULE_KEYS = ("lora.band_ranks", "lora.layer_ranks", "lora.module_ranks")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


class ReportError(RuntimeError):
    """A problem reading or reporting a study: one line naming what is wrong and the fix."""


@dataclass
class Study:
    """A study as recorded in MLflow."""

    name: str
    tracking_uri: str
    experiment_id: str
    experiment: str  # the experiment (config) name from the parent run
    objectives: list[str]
    group_by: list[str]
    trials: pd.DataFrame  # the trials that were trained (or copied, or failed): every row but those ruled out
    parent_tags: dict[str, str] = field(default_factory=dict)
    parent_params: dict[str, str] = field(default_factory=dict)
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)  # baseline key -> the base model's metrics
    arms: list[dict] = field(default_factory=list)  # [{"arm": label, "budget": trials}] of the question's arms
    experiment_name: str = ""  # the MLflow experiment (the study name unless sweep.experiment_name was set)
    ruled_out: pd.DataFrame = field(default_factory=pd.DataFrame)  # configs ruled out before training (the budgets;
    # status INFEASIBLE, the reason in failure_reason): never trained, so in no table of results


def parse_param(text: str | None):
    """MLflow param string -> Python value: 'None' -> None, 'True'/'False' -> bool, numbers; else the text."""
    if text is None or text == "None":
        return None
    if text in ("True", "False"):
        return text == "True"
    if _NUMBER.match(text):
        try:
            return int(text)
        except ValueError:
            return float(text)
    return text


def open_store(tracking_uri: str = DEFAULT_TRACKING_URI):
    """An MlflowClient on an existing, readable store, or a ReportError naming the URI and the fix."""
    uri = absolute_uri(tracking_uri)
    path = sqlite_path(uri)
    if path is not None and not path.is_file():
        raise ReportError(f"no MLflow store at {tracking_uri} ({path} does not exist): run a sweep first "
                          "(python -m sweep +experiment=NAME) or pass --tracking-uri URI")
    # checked here, not by MLflow: in a process whose sqlite connections run pragmas (sweep.sqlite.tune), a corrupt
    # file fails MLflow's engine probe, which it retries with sleeps for ~100 s before giving up
    problem = check_sqlite_file(path) if path is not None else None
    if problem:
        raise ReportError(f"cannot read the MLflow store {tracking_uri}: {problem} (if it is corrupt, move it away "
                          f"(mv {path} {path}.bad) and rerun the sweep, or pass --tracking-uri of a working store)")
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)
    except Exception as exc:  # sqlalchemy DatabaseError, connection refused, permissions ...
        first = one_line(exc, 200)
        fix = (f"if {path} is corrupt, move it away (mv {path} {path}.bad) and rerun the sweep, or pass --tracking-uri "
               "of a working store") if path is not None else "check that the tracking server is up and the URI is right"
        raise ReportError(f"cannot read the MLflow store {tracking_uri}: {first} ({fix})") from None
    return client


def list_studies(tracking_uri: str) -> list[str]:
    """Names of the experiments in the store (one per study), the MLflow 'Default' one left out."""
    import mlflow

    from sweep.tracking.mlflow_tracker import using_tracking_uri

    with using_tracking_uri(absolute_uri(tracking_uri)):
        return sorted(e.name for e in mlflow.search_experiments() if e.name != "Default")


def _status(tags: dict[str, str], run_status: str) -> str:
    tag = tags.get(T.STATUS, "")
    if tag in STATUSES:
        return tag
    if run_status in ("FAILED", "KILLED"):
        return "FAILED"
    return "RUNNING" if run_status in ("RUNNING", "SCHEDULED") else tag or run_status


def _trial_number(tags: dict[str, str], run_name: str) -> int:
    raw = tags.get(T.TRIAL_NUMBER, "")
    if raw.lstrip("-").isdigit():
        return int(raw)
    m = re.match(r"trial-(\d+)", run_name or "")
    return int(m.group(1)) if m else -1


def schedule_text(row: dict) -> str:
    """The layer-wise rank schedule of a config: 'band_ranks=[2, 4, 8]', ..., or 'uniform'."""
    for key in SCHEDULE_KEYS:
        v = row.get(key)
        if v is not None and not (isinstance(v, float) and math.isnan(v)) and str(v) not in ("", "None", "[]", "{}"):
            return f"{key.split('.', 1)[1]}={v}"
    return "uniform"


def runs_frame(runs: list) -> pd.DataFrame:
    """The trials frame of MLflow child runs (sorted by trial number, then start time)."""
    records, params, metric_rows = [], [], []
    for run in runs:
        tags, info = run.data.tags, run.info
        status = _status(tags, info.status)
        reason = tags.get(T.RULED_OUT if status == T.INFEASIBLE else T.FAILURE_REASON, "") or ""
        if status == "FAILED" and not reason:
            reason = f"no reason recorded (MLflow run status {info.status})"
        reused = tags.get(T.REUSED_FROM, "")
        records.append({
            "trial": _trial_number(tags, info.run_name), "config_hash": tags.get(T.CONFIG_HASH, ""),
            "status": status, "failure_reason": reason,
            "reused_from": int(reused) if reused.lstrip("-").isdigit() else None,
            "device": tags.get(T.DEVICE, ""), "seed": tags.get(T.SEED, ""),
            "git_sha": tags.get(T.GIT_SHA, ""), "arm": tags.get(T.ARM, ""), "baseline_key": tags.get(T.BASELINE_KEY, ""),
            "host": tags.get(T.HOST, ""), "node_id": tags.get(T.NODE_ID, ""), "gpu": tags.get(T.GPU, ""),
            "gpu_share": tags.get(T.GPU_SHARE, ""),
            "run_id": info.run_id, "run_name": info.run_name or "",
            "run_status": info.status, "start_time": info.start_time,
        })
        params.append({k: parse_param(v) for k, v in run.data.params.items()})
        metric_rows.append(dict(run.data.metrics))
    param_names = sorted({k for p in params for k in p})
    seen = {k for m in metric_rows for k in m}
    metric_names = [m.name for m in mt.METRICS] + sorted(seen - set(mt.BY_NAME))
    cols: dict[str, pd.Series] = {}
    for c in TRIAL_COLUMNS:
        cols[c] = pd.Series([r[c] for r in records], dtype=object)
    for c in param_names:
        cols[c] = pd.Series([p.get(c) for p in params], dtype=object)
    cols["schedule"] = pd.Series([schedule_text(p) for p in params], dtype=object)
    for c in metric_names:
        cols[c] = pd.Series([float(m[c]) if c in m else np.nan for m in metric_rows], dtype=float)
    frame = pd.DataFrame(cols)
    frame["trial"] = frame["trial"].astype(int)
    frame["start_time"] = pd.to_numeric(frame["start_time"], errors="coerce")
    return frame.sort_values(["trial", "start_time"], kind="stable").reset_index(drop=True)


def _split(tag: str | None, default: tuple[str, ...]) -> list[str]:
    items = [s.strip() for s in (tag or "").split(",") if s.strip()]
    return items or list(default)


def find_experiment(client, name: str, tracking_uri: str):
    """The live MLflow experiment of a study named `name`: the experiment of that exact name (a study's experiment
    is named after it unless sweep.experiment_name was set), else the one whose parent run carries
    `lorasweep.study=name`; None when there is neither."""
    exp = client.get_experiment_by_name(name)
    if exp is not None and exp.lifecycle_stage != "deleted":
        return exp
    from sweep.names import is_path_name

    if not is_path_name(name):  # study names are path names: nothing else can be a study tag (nor quoted safely)
        return None
    import mlflow

    from sweep.tracking.mlflow_tracker import using_tracking_uri

    with using_tracking_uri(absolute_uri(tracking_uri)):
        ids = [e.experiment_id for e in mlflow.search_experiments()]
    found = search_runs(tracking_uri, ids, T.role_filter(T.ROLE_PARENT, name), frame=False) if ids else []
    found.sort(key=lambda r: r.info.start_time or 0)
    return client.get_experiment(found[0].info.experiment_id) if found else None


def study_exists(name: str, tracking_uri: str) -> bool:
    """Whether MLflow at `tracking_uri` holds a study named `name` (False when the store is missing or unreadable)."""
    try:
        return find_experiment(open_store(tracking_uri), name, tracking_uri) is not None
    except ReportError:
        return False


def load_study(study: str, tracking_uri: str = DEFAULT_TRACKING_URI) -> Study:
    """All trial runs of `study` (a study name or its MLflow experiment name) from MLflow; a ReportError when the
    store or the study is missing."""
    client = open_store(tracking_uri)
    exp = find_experiment(client, study, tracking_uri)
    if exp is None:
        known = list_studies(tracking_uri)
        raise ReportError(f"no study {study!r} in MLflow store {tracking_uri}; studies there: "
                          f"{', '.join(known) if known else '(none: run a sweep first)'}")
    parents = search_runs(tracking_uri, [exp.experiment_id], T.role_filter(T.ROLE_PARENT), frame=False)
    parents.sort(key=lambda r: r.info.start_time or 0)
    parent_tags = dict(parents[0].data.tags) if parents else {}
    study = parent_tags.get(T.STUDY) or study  # the study's own name when it was looked up by its experiment's
    parent_params = dict(parents[0].data.params) if parents else {}
    runs = search_runs(tracking_uri, [exp.experiment_id], T.role_filter(T.ROLE_TRIAL), frame=False)
    if not runs:
        raise ReportError(f"study {study!r} in {tracking_uri} has no trial runs yet (start or resume it: "
                          f"python -m sweep +experiment=NAME)")
    baselines = {r.data.tags.get(T.BASELINE_KEY, ""): dict(r.data.metrics)
                 for r in search_runs(tracking_uri, [exp.experiment_id], T.role_filter(T.ROLE_BASELINE), frame=False)
                 if r.data.tags.get(T.STATUS) == "COMPLETE"}
    frame = runs_frame(runs)
    infeasible = frame["status"] == T.INFEASIBLE
    return Study(name=study, tracking_uri=tracking_uri, experiment_id=exp.experiment_id,
                 experiment=parent_tags.get(T.EXPERIMENT, study), experiment_name=exp.name,
                 objectives=_split(parent_tags.get(T.OBJECTIVES), DEFAULT_OBJECTIVES),
                 group_by=_split(parent_tags.get(T.GROUP_BY), DEFAULT_GROUP_BY),
                 trials=with_baselines(frame[~infeasible].reset_index(drop=True), baselines), parent_tags=parent_tags,
                 parent_params=parent_params, baselines=baselines, arms=json.loads(parent_tags.get(T.ARMS, "[]")),
                 ruled_out=frame[infeasible].reset_index(drop=True))


def with_baselines(frame: pd.DataFrame, baselines: dict[str, dict[str, float]]) -> pd.DataFrame:
    """Each trial's merged latency and its baseline's accuracy (`baseline_accuracy`), from its baseline run."""
    out = frame.copy()
    keys = out["baseline_key"] if "baseline_key" in out else pd.Series("", index=out.index)
    for name in FROM_BASELINE:
        measured = pd.to_numeric(out[name], errors="coerce") if name in out else pd.Series(np.nan, index=out.index)
        shared = pd.Series([baselines.get(k, {}).get(name, np.nan) for k in keys], index=out.index, dtype=float)
        out[name] = shared.where(shared.notna(), measured)
    out["baseline_accuracy"] = [baselines.get(k, {}).get("eval_accuracy", np.nan) for k in keys]
    return out
