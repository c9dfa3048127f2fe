"""The MLflow run of a serving measurement: its own experiment, linked to the studies' trial runs by tags.

Experiment `multitask`, run name `serve:<study>+<study>...`, tags
`lorasweep.role=serve`, `lorasweep.serve.studies`, and per study
`lorasweep.serve.<study>.run_id` / `.config_hash` (the trial run whose adapter is
served); metrics from result.SERVE_METRICS; artifacts: serving.json and the report files.
Written through MlflowClient with explicit run ids, like the sweep's trial runs.
"""

from __future__ import annotations

from pathlib import Path

from sweep.tracking.tags import PREFIX

EXPERIMENT = "multitask"  # MLflow experiment holding every serving run
ROLE = "serve"  # value of the lorasweep.role tag (sweeps use parent / trial)
TAG_STUDIES = f"{PREFIX}serve.studies"


def study_tag(study: str, what: str) -> str:
    """`lorasweep.serve.<study>.<what>`: the link from the serving run to a study's trial run."""
    return f"{PREFIX}serve.{study}.{what}"


def open_run(result, *, tracking_uri: str, artifact_location: str) -> str:
    """Create the serving run with its tags and params (the report then names it); returns its run id."""
    from mlflow.entities import Param

    from sweep.provenance import git_state
    from sweep.tracking import mlflow_tracker as mt

    uri = mt.absolute_uri(tracking_uri)
    with mt.init_lock(uri):
        exp_id = mt.ensure_experiment(uri, EXPERIMENT, artifact_location)
    c = mt.client(uri)
    tags = {f"{PREFIX}role": ROLE, TAG_STUDIES: ",".join(result.studies), f"{PREFIX}git_sha": str(git_state()["git_sha"]),
            f"{PREFIX}device": result.device, f"{PREFIX}serve.all_exact": str(result.all_exact),
            f"{PREFIX}serve.recommendation": result.recommendation[:4900]}
    for a in result.adapters:
        tags[study_tag(a.study, "config_hash")] = a.config_hash
        tags[study_tag(a.study, "run_id")] = a.run_id or ""
        tags[study_tag(a.study, "chosen")] = a.how
    run = mt._retry(c.create_run, exp_id, run_name=f"serve:{'+'.join(result.studies)}", tags=tags)
    params = [Param(f"{a.study}.config_hash", a.config_hash) for a in result.adapters]
    params += [Param("base.model", str(result.base["name"])), Param("base.quant", str(result.base["quant"])),
               Param("batch", str(result.pricing.batch))]
    mt._retry(c.log_batch, run.info.run_id, params=params)
    return run.info.run_id


def close_run(run_id: str, result, *, tracking_uri: str, files: list[Path]) -> None:
    """Log the metrics and the report files to the serving run and finish it."""
    import time

    from mlflow.entities import Metric

    from sweep.tracking import mlflow_tracker as mt

    c = mt.client(mt.absolute_uri(tracking_uri))
    now = int(time.time() * 1000)
    mt._retry(c.log_batch, run_id, metrics=[Metric(k, v, now, 0) for k, v in result.metrics().items()])
    for f in files:
        mt._retry(c.log_artifact, run_id, str(f))
    mt._retry(c.set_terminated, run_id, status="FINISHED")
