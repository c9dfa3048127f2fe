"""Which adapter of each study is served, and its files.

A study's adapter is the one the study's report recommends (`sweep.report.cost.recommend`
over the study read from MLflow, the same call chain as the report), or the trial of a
config hash given explicitly (`--hash STUDY=PREFIX`, looked up like `sweep.reproduce`).
Its config, recorded metrics, environment and adapter are downloaded from the MLflow
run's artifacts, so that a store alone is enough; the trial folder
(`sweeps/<study>/trials/<n>-<hash>/`) is the fallback.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from sweep.multitask import MultitaskError
from sweep.names import folder_for

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


@dataclass
class Chosen:
    """One study's adapter, ready to load."""

    study: str  # the study (MLflow experiment) it comes from; also the adapter's name in the served model
    config_hash: str  # config hash of the trial that trained it
    how: str  # "recommended" (the report's recommendation) or "given" (--hash)
    config: object  # TrialConfig of that trial
    metrics: dict[str, float]  # metrics the study recorded for it (result.json, else MLflow)
    meta: dict  # meta.json: model and data fingerprints, device, versions, placement (threads)
    adapter_dir: Path  # folder holding adapter_config.json and adapter_model.safetensors
    source: str  # where the files came from (MLflow run id or trial folder)
    run_id: str | None = None  # MLflow run of the trial that trained it
    trial_number: int | None = None  # Optuna trial number
    note: str = ""  # the recommendation's reasoning, when recommended
    extra: dict = field(default_factory=dict)


def recommended_hash(study: str, tracking_uri: str, cost) -> tuple[str, str]:
    """(config hash, reasoning) of the config the study's report recommends, read from MLflow."""
    from sweep.report.load import ReportError, load_study
    from sweep.report.render import recommendation_of

    try:
        st = load_study(study, tracking_uri)
    except ReportError as exc:
        raise MultitaskError(str(exc)) from None
    rec = recommendation_of(st, cost)[0]
    if rec.chosen is None:
        raise MultitaskError(f"study {study!r}: {rec.text} (pass --hash {study}=PREFIX of a completed trial)")
    return str(rec.chosen["config_hash"]), rec.text


def _read_json(path: Path | None) -> dict:
    try:
        return json.loads(Path(path).read_text()) if path else {}
    except (OSError, ValueError):
        return {}


def _has_adapter(folder: Path | None) -> bool:
    return folder is not None and all((folder / f).is_file() for f in ADAPTER_FILES)


def _download(client, run_id: str, name: str, dst: Path) -> Path | None:
    try:
        return Path(client.download_artifacts(run_id, name, str(dst)))
    except Exception:  # absent artifact (reused runs log none, log_adapter=false) or unreachable store
        return None


def _from_mlflow(client, run_id: str, dst: Path) -> tuple[str, dict, dict, Path] | None:
    dst.mkdir(parents=True, exist_ok=True)
    cfg = _download(client, run_id, "config.yaml", dst)
    adapter = _download(client, run_id, "adapter", dst)
    if cfg is None or not _has_adapter(adapter):
        return None
    result = _read_json(_download(client, run_id, "result.json", dst))
    env = _read_json(_download(client, run_id, "meta.json", dst))
    return cfg.read_text(), result, env, adapter


def _from_folder(folder: Path) -> tuple[str, dict, dict, Path] | None:
    if not (folder / "config.yaml").is_file() or not _has_adapter(folder / "adapter"):
        return None
    return (folder / "config.yaml").read_text(), _read_json(folder / "result.json"), _read_json(folder / "meta.json"), \
        folder / "adapter"


def fetch(study: str, prefix: str, *, how: str, tracking_uri: str, sweeps_dir: Path | str, dest: Path,
          note: str = "") -> Chosen:
    """The trial of `study` whose config hash starts with `prefix`, with its adapter files under `dest`."""
    import yaml

    from sweep.config.errors import ConfigError
    from sweep.config.schema import TrialConfig
    from sweep.report.load import open_store
    from sweep.reproduce import ReproduceError, find_candidates, pick

    try:
        found = [c for c in find_candidates(prefix, tracking_uri, sweeps_dir) if c.study == study]
        candidates = pick(prefix, found, tracking_uri, sweeps_dir)
    except ReproduceError as exc:
        raise MultitaskError(f"study {study!r}: {exc}") from None
    client = None
    for c in candidates:
        got, where = None, ""
        if c.run_id:
            client = client or open_store(tracking_uri)
            got, where = _from_mlflow(client, c.run_id, dest / folder_for(study) / c.run_id), f"MLflow run {c.run_id}"
        if got is None and c.folder is not None:
            got, where = _from_folder(c.folder), f"trial folder {c.folder}"
        if got is None:
            continue
        text, result, env, adapter = got
        metrics = {k: (math.nan if v is None else float(v)) for k, v in (result.get("metrics") or {}).items()}
        metrics = metrics or dict(c.mlflow_metrics)
        if "eval_accuracy" not in metrics:
            continue  # a failed or pruned run: nothing to reproduce
        try:
            cfg = TrialConfig.from_dict(yaml.safe_load(text))
        except ConfigError as exc:
            raise MultitaskError(f"study {study!r}: config {c.config_hash} no longer validates: "
                                 f"{'; '.join(exc.problems)}") from None
        run_id = c.run_id or next((x.run_id for x in candidates if x.run_id and not x.reused), None)
        return Chosen(study=study, config_hash=c.config_hash, how=how, config=cfg, metrics=metrics, meta=env,
                      adapter_dir=adapter, source=where, run_id=run_id, trial_number=c.trial_number, note=note)
    raise MultitaskError(f"study {study!r}: config hash {candidates[0].config_hash} has no completed run with an adapter "
                         f"among the MLflow artifacts of {tracking_uri} or the trial folders under {sweeps_dir}/ "
                         "(sweeps with tracking.log_adapter=false keep it only in the folder; rerun the trial with "
                         "train.save_adapter=true)")


def choose(studies: list[str], hashes: dict[str, str], *, tracking_uri: str, sweeps_dir: Path | str, dest: Path,
           cost) -> list[Chosen]:
    """One adapter per study, in the order given: the explicit hash when given, else the recommendation."""
    unknown = sorted(set(hashes) - set(studies))
    if unknown:
        raise MultitaskError(f"--hash {unknown[0]}=...: {unknown[0]!r} is not among the studies given "
                             f"({', '.join(studies)}); name the study on the command line too")
    out = []
    for study in studies:
        if study in hashes:
            out.append(fetch(study, hashes[study], how="given", tracking_uri=tracking_uri, sweeps_dir=sweeps_dir,
                             dest=dest))
        else:
            h, text = recommended_hash(study, tracking_uri, cost)
            out.append(fetch(study, h, how="recommended", tracking_uri=tracking_uri, sweeps_dir=sweeps_dir, dest=dest,
                             note=text))
    return out
