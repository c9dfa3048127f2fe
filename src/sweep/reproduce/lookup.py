"""Find a recorded trial by config-hash prefix: MLflow runs (every experiment) and trial folders.

The trial is looked up by hash prefix in MLflow (tag `lorasweep.config_hash`) and in the
trial folders (`<sweeps>/<study>/trials/<nnnn>-<hash>/`, `<sweeps>/single/<hash>/`); a
completed original is preferred to reuses and failures. Its config.yaml and result.json
come from the run's artifacts or, failing that, from the folder.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from sweep.config.hashing import HASH_LENGTH
from sweep.provenance import recorded_threads
from sweep.tracking import tags as T

MIN_PREFIX = 4
STATUS_ORDER = {"COMPLETE": 0, "PRUNED": 1, "FAILED": 2}
_FOLDER = re.compile(rf"^(\d+)-([0-9a-f]{{{HASH_LENGTH}}})$")


class ReproduceError(RuntimeError):
    """The trial cannot be found or rebuilt: one line naming the prefix and the fix."""


@dataclass
class Candidate:
    """One recorded run of a config hash: an MLflow run or a trial folder."""

    config_hash: str
    study: str = ""
    trial_number: int | None = None
    status: str = ""
    reused: bool = False
    device: str = ""
    run_id: str | None = None
    folder: Path | None = None
    start_time: int = 0
    mlflow_metrics: dict[str, float] = field(default_factory=dict)

    def where(self) -> str:
        trial = f"trial {self.trial_number}" if self.trial_number is not None else "single trial"
        src = f"MLflow run {self.run_id}" if self.run_id else f"folder {self.folder}"
        return f"study {self.study or '?'}, {trial}, {src}"

    def rank(self) -> tuple:
        return (STATUS_ORDER.get(self.status, 3), self.reused, self.run_id is None, self.start_time)


@dataclass
class Original:
    """The recorded trial to reproduce."""

    config_hash: str
    config: dict
    metrics: dict[str, float]
    status: str
    device: str
    source: Candidate
    threads: int = 0  # torch CPU threads the original ran with (CPU float sums depend on it); 0 = not recorded


def normalise_prefix(prefix: str) -> str:
    """Lower-case hex prefix of 4..12 characters, or a ReproduceError saying what is wrong."""
    p = (prefix or "").strip().lower()
    if not re.fullmatch(r"[0-9a-f]*", p):
        raise ReproduceError(f"config-hash prefix {prefix!r} is not hexadecimal (config hashes are {HASH_LENGTH} hex characters, "
                             "e.g. 3fa9c01b7e42)")
    if len(p) < MIN_PREFIX:
        raise ReproduceError(f"config-hash prefix {prefix!r} is too short: give at least {MIN_PREFIX} hex characters")
    if len(p) > HASH_LENGTH:
        raise ReproduceError(f"config-hash prefix {prefix!r} is longer than a config hash ({HASH_LENGTH} hex characters)")
    return p


def _mlflow_candidates(prefix: str, tracking_uri: str) -> list[Candidate]:
    import mlflow

    from sweep.report.load import ReportError, open_store
    from sweep.tracking.mlflow_tracker import using_tracking_uri, absolute_uri, search_runs, sqlite_path

    path = sqlite_path(tracking_uri)
    if path is not None and not path.is_file():
        return []  # no store here: the trial folders may still have it
    try:
        open_store(tracking_uri)
    except ReportError as exc:
        raise ReproduceError(str(exc)) from None
    with using_tracking_uri(absolute_uri(tracking_uri)):
        ids = [e.experiment_id for e in mlflow.search_experiments()]
    if not ids:
        return []
    out = []
    for run in search_runs(tracking_uri, ids, f"tags.`{T.CONFIG_HASH}` LIKE '{prefix}%'", frame=False):
        tags = run.data.tags
        number = tags.get(T.TRIAL_NUMBER, "")
        out.append(Candidate(config_hash=tags[T.CONFIG_HASH], study=tags.get(T.STUDY, ""),
                             trial_number=int(number) if number.isdigit() else None,
                             status=tags.get(T.STATUS, "") or ("FAILED" if run.info.status == "FAILED" else ""),
                             reused=bool(tags.get(T.REUSED_FROM)), device=tags.get(T.DEVICE, ""),
                             run_id=run.info.run_id, start_time=run.info.start_time or 0,
                             mlflow_metrics=dict(run.data.metrics)))
    return out


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _folder_candidates(prefix: str, sweeps_dir: Path) -> list[Candidate]:
    out = []
    if not sweeps_dir.is_dir():
        return out
    for folder in sorted(sweeps_dir.glob(f"*/trials/*-{prefix}*")):
        m = _FOLDER.match(folder.name)
        if m and folder.is_dir():
            out.append(_folder_candidate(folder, m.group(2), folder.parent.parent.name, int(m.group(1))))
    for folder in sorted((sweeps_dir / "single").glob(f"{prefix}*")):
        if folder.is_dir() and re.fullmatch(rf"[0-9a-f]{{{HASH_LENGTH}}}", folder.name):
            out.append(_folder_candidate(folder, folder.name, "single", None))
    return out


def _folder_candidate(folder: Path, h: str, study: str, number: int | None) -> Candidate:
    result = _read_json(folder / "result.json")
    meta = _read_json(folder / "meta.json")
    cfg = folder / "config.yaml"
    return Candidate(config_hash=h, study=study, trial_number=number, status=str(result.get("status", "")),
                     device=str(meta.get("device", "")), folder=folder, start_time=int(cfg.stat().st_mtime) if cfg.exists() else 0)


def find_candidates(prefix: str, tracking_uri: str, sweeps_dir: Path | str) -> list[Candidate]:
    """Every recorded run whose config hash starts with `prefix` (validated), MLflow and folders together."""
    p = normalise_prefix(prefix)
    return _mlflow_candidates(p, tracking_uri) + _folder_candidates(p, Path(sweeps_dir))


def pick(prefix: str, candidates: list[Candidate], tracking_uri: str, sweeps_dir: Path | str) -> list[Candidate]:
    """The candidates of the one hash the prefix names, best first (COMPLETE originals before reuses and failures)."""
    hashes: dict[str, list[Candidate]] = {}
    for c in candidates:
        hashes.setdefault(c.config_hash, []).append(c)
    if not hashes:
        raise ReproduceError(f"no trial with a config hash starting {prefix!r} in MLflow store {tracking_uri} or under "
                             f"{sweeps_dir}/ (the report's trials.csv lists config_hash; pass --tracking-uri/--sweeps-dir "
                             "if the sweep wrote elsewhere)")
    if len(hashes) > 1:
        listed = "; ".join(f"{h} ({sorted(hashes[h], key=Candidate.rank)[0].where()})" for h in sorted(hashes))
        raise ReproduceError(f"config-hash prefix {prefix!r} is ambiguous: it matches {len(hashes)} config hashes: {listed}; "
                             "give more characters")
    return sorted(next(iter(hashes.values())), key=Candidate.rank)


def _download(client, run_id: str, name: str, dst: str) -> Path | None:
    try:
        return Path(client.download_artifacts(run_id, name, dst))
    except Exception:  # artifact absent (reused runs log none) or store unreachable
        return None


def load_original(chosen: list[Candidate], tracking_uri: str) -> Original:
    """Config and metrics of the best candidate that still has its config.yaml (MLflow artifact or folder)."""
    from sweep.report.load import open_store

    client = None
    for c in chosen:
        text, result = None, {}
        if c.run_id:
            client = client or open_store(tracking_uri)
            with tempfile.TemporaryDirectory() as tmp:
                cfg_path = _download(client, c.run_id, "config.yaml", tmp)
                res_path = _download(client, c.run_id, "result.json", tmp)
                text = cfg_path.read_text() if cfg_path and cfg_path.is_file() else None
                result = _read_json(res_path) if res_path else {}
        if text is None and c.folder is not None and (c.folder / "config.yaml").is_file():
            text = (c.folder / "config.yaml").read_text()
            result = _read_json(c.folder / "result.json")
        if text is None:
            continue
        metrics = {k: (math.nan if v is None else float(v)) for k, v in (result.get("metrics") or {}).items()}
        if not metrics:  # no result.json: the final values MLflow kept (latest step)
            metrics = dict(next((x.mlflow_metrics for x in chosen if x.mlflow_metrics and not x.reused), c.mlflow_metrics))
        return Original(c.config_hash, _load_yaml(text), metrics, c.status or str(result.get("status", "")),
                        c.device, c, recorded_threads(result.get("meta")))
    raise ReproduceError(f"config hash {chosen[0].config_hash}: no config.yaml found (not among the MLflow run artifacts, "
                         f"no trial folder); searched {', '.join(c.where() for c in chosen)}")


def find_original(prefix: str, tracking_uri: str, sweeps_dir: Path | str) -> Original:
    """The recorded trial named by a config-hash prefix."""
    chosen = pick(prefix, find_candidates(prefix, tracking_uri, sweeps_dir), tracking_uri, sweeps_dir)
    return load_original(chosen, tracking_uri)




def _load_yaml(text: str) -> dict:
    """A trial's config.yaml as a plain dict, read with Hydra's own OmegaConf."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.create(text), resolve=False)
