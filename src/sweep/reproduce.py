"""Rerun a trial from its config hash and compare every metric with the recorded one.

    python -m sweep.reproduce <config-hash-prefix> [--tracking-uri URI] [--sweeps-dir sweeps]

The trial is looked up by hash prefix in MLflow (tag `lorasweep.config_hash`, every
experiment) and in the trial folders (`<sweeps>/<study>/trials/<nnnn>-<hash>/`,
`<sweeps>/single/<hash>/`). Its config.yaml is rebuilt into a TrialConfig and run
again; deterministic metrics must match exactly on CPU, within a stated tolerance on
GPU; timing and memory metrics are shown as ratios and not judged.
Exit code: 0 all judged metrics match, 1 some differ, 2 the trial could not be found.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sweep import metrics as mt

MIN_PREFIX = 4
HASH_LENGTH = 12
# judged metrics: the same config on the same kind of device must give these again
DETERMINISTIC = ("eval_accuracy", "eval_loss", "train_loss", "trainable_params", "adapter_params", "total_params", "eval_samples")
GPU_ABS_TOL = {"eval_accuracy": 0.01}  # absolute tolerance on GPU (non-deterministic kernels)
GPU_REL_TOL = {"eval_loss": 1e-3, "train_loss": 1e-3}  # relative tolerance on GPU
STATUS_ORDER = {"COMPLETE": 0, "PRUNED": 1, "FAILED": 2}
_FOLDER = re.compile(r"^(\d+)-([0-9a-f]{12})$")


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


@dataclass
class Row:
    metric: str
    unit: str
    original: Any
    rerun: Any
    verdict: str  # match | DIFF | ratio x.. | not judged
    judged: bool
    ok: bool


# ------------------------------------------------------------------ lookup
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
    from sweep.report.load import PREFIX, ReportError, open_store, search_all, sqlite_path
    from sweep.tracking.mlflow_tracker import absolute_uri

    path = sqlite_path(absolute_uri(tracking_uri))
    if path is not None and not path.is_file():
        return []  # no store here: the trial folders may still have it
    try:
        client = open_store(tracking_uri)
    except ReportError as exc:
        raise ReproduceError(str(exc)) from None
    ids, token = [], None
    while True:
        page = client.search_experiments(max_results=1000, page_token=token)
        ids += [e.experiment_id for e in page]
        token = page.token
        if not token:
            break
    if not ids:
        return []
    out = []
    for run in search_all(client, ids, f"tags.`{PREFIX}config_hash` LIKE '{prefix}%'"):
        tags = run.data.tags
        number = tags.get(f"{PREFIX}trial_number", "")
        out.append(Candidate(config_hash=tags[f"{PREFIX}config_hash"], study=tags.get(f"{PREFIX}study", ""),
                             trial_number=int(number) if number.isdigit() else None,
                             status=tags.get(f"{PREFIX}status", "") or ("FAILED" if run.info.status == "FAILED" else ""),
                             reused=bool(tags.get(f"{PREFIX}reused_from")), device=tags.get(f"{PREFIX}device", ""),
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
        if folder.is_dir() and re.fullmatch(r"[0-9a-f]{12}", folder.name):
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
    import yaml

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
        return Original(c.config_hash, yaml.safe_load(text), metrics, c.status or str(result.get("status", "")),
                        c.device, c)
    raise ReproduceError(f"config hash {chosen[0].config_hash}: no config.yaml found (not among the MLflow run artifacts, "
                         f"no trial folder); searched {', '.join(c.where() for c in chosen)}")


def find_original(prefix: str, tracking_uri: str, sweeps_dir: Path | str) -> Original:
    """The recorded trial named by a config-hash prefix."""
    chosen = pick(prefix, find_candidates(prefix, tracking_uri, sweeps_dir), tracking_uri, sweeps_dir)
    return load_original(chosen, tracking_uri)


# ------------------------------------------------------------------ comparison
def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def judge(metric: str, original: float, rerun: float, gpu: bool) -> bool:
    """Does a deterministic metric match: exactly (CPU, and counts everywhere), or within the GPU tolerance."""
    a, b = float(original), float(rerun)
    if math.isnan(a) and math.isnan(b):
        return True
    if gpu and metric in GPU_ABS_TOL:
        return abs(a - b) <= GPU_ABS_TOL[metric]
    if gpu and metric in GPU_REL_TOL:
        return abs(a - b) <= GPU_REL_TOL[metric] * max(abs(a), abs(b))
    return a == b


def compare(original: dict[str, float], rerun: dict[str, float], *, gpu: bool,
            original_status: str = "", rerun_status: str = "") -> list[Row]:
    """One row per metric (status first): deterministic ones judged, the rest shown as rerun/original ratios."""
    rows = []
    if original_status:
        same = original_status == rerun_status
        rows.append(Row("status", "", original_status, rerun_status, "match" if same else "DIFF", True, same))
    names = [m.name for m in mt.METRICS if m.name in original or m.name in rerun]
    names += sorted((set(original) | set(rerun)) - set(mt.BY_NAME))
    for name in names:
        unit = mt.BY_NAME[name].unit if name in mt.BY_NAME else ""
        a, b = original.get(name), rerun.get(name)
        if name in DETERMINISTIC:
            if a is None:
                rows.append(Row(name, unit, a, b, "not in original", False, True))
            elif b is None:
                rows.append(Row(name, unit, a, b, "DIFF (missing in rerun)", True, False))
            else:
                ok = judge(name, a, b, gpu)
                rows.append(Row(name, unit, a, b, "match" if ok else "DIFF", True, ok))
        else:
            if _is_num(a) and _is_num(b) and math.isfinite(a) and math.isfinite(b) and a != 0:
                verdict = f"ratio x{b / a:.3g}"
            else:
                verdict = "not judged"
            rows.append(Row(name, unit, a, b, verdict, False, True))
    return rows


def _cell(v, unit: str, exact: bool) -> str:
    if v is None:
        return "–"
    if not _is_num(v):
        return str(v)
    if math.isnan(float(v)):
        return "nan"
    if unit == "params":
        return f"{float(v):,.0f}"
    return repr(float(v)) if exact else f"{float(v):.6g}"


def format_rows(rows: list[Row]) -> str:
    """The side-by-side table as text."""
    table = [("metric", "unit", "original", "rerun", "match")]
    for r in rows:
        exact = r.metric in DETERMINISTIC
        table.append((r.metric, r.unit, _cell(r.original, r.unit, exact), _cell(r.rerun, r.unit, exact), r.verdict))
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table)


def tolerance_text(gpu: bool) -> str:
    if not gpu:
        return "CPU: deterministic metrics must match exactly"
    abs_t = ", ".join(f"{k} abs {v:g}" for k, v in GPU_ABS_TOL.items())
    rel_t = ", ".join(f"{k} rel {v:g}" for k, v in GPU_REL_TOL.items())
    return f"GPU: tolerance {abs_t}; {rel_t}; parameter counts and eval_samples exact"


# ------------------------------------------------------------------ rerun
@dataclass
class Outcome:
    original: Original
    rerun_status: str
    rerun_device: str
    rows: list[Row]
    gpu: bool
    hash_now: str
    output_dir: Path

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows if r.judged)


def reproduce(prefix: str, *, tracking_uri: str, sweeps_dir: Path | str = "sweeps",
              runner: Callable | None = None, log: Callable[[str], None] = print) -> Outcome:
    """Find the trial, rebuild its TrialConfig, run it again and compare (runner defaults to sweep.trial.run_trial)."""
    from sweep.config.errors import ConfigError
    from sweep.config.hashing import config_hash
    from sweep.config.schema import TrialConfig

    original = find_original(prefix, tracking_uri, sweeps_dir)
    try:
        cfg = TrialConfig.from_dict(original.config)
    except ConfigError as exc:
        raise ReproduceError(f"config {original.config_hash} no longer validates: {'; '.join(exc.problems)}") from None
    hash_now = config_hash(cfg)
    log(f"reproducing {original.config_hash} ({original.source.where()}; recorded status {original.status or '?'}, "
        f"device {original.device or '?'})")
    if hash_now != original.config_hash:
        log(f"warning: this config hashes to {hash_now} today, not {original.config_hash}: the schema or its defaults "
            "changed since the sweep; the rerun may legitimately differ")
    if runner is None:
        from sweep.trial import run_trial as runner
    out = Path(sweeps_dir) / "reproduce" / original.config_hash
    result = runner(cfg, output_dir=out)
    status = getattr(result.status, "value", str(result.status))
    device = str((getattr(result, "meta", None) or {}).get("device", ""))
    gpu = original.device.startswith("cuda") or device.startswith("cuda")
    rows = compare(original.metrics, dict(result.metrics), gpu=gpu, original_status=original.status, rerun_status=status)
    if getattr(result, "error", None):
        log(f"rerun reported: {result.error}")
    return Outcome(original, status, device, rows, gpu, hash_now, out)


def main(argv: list[str] | None = None) -> int:
    from sweep.report.load import DEFAULT_TRACKING_URI

    ap = argparse.ArgumentParser(prog="python -m sweep.reproduce",
                                 description="Rerun a trial from its config hash and compare every metric with the original.")
    ap.add_argument("prefix", help=f"config hash or a unique prefix of it (at least {MIN_PREFIX} hex characters)")
    ap.add_argument("--tracking-uri", default=DEFAULT_TRACKING_URI, help=f"MLflow tracking URI (default {DEFAULT_TRACKING_URI})")
    ap.add_argument("--sweeps-dir", default="sweeps", help="folder with <study>/trials/ (default sweeps)")
    args = ap.parse_args(argv)
    from sweep.quiet import quiet_libraries

    quiet_libraries()
    try:
        outcome = reproduce(args.prefix, tracking_uri=args.tracking_uri, sweeps_dir=args.sweeps_dir)
    except ReproduceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"original device: {outcome.original.device or '?'}; rerun device: {outcome.rerun_device or '?'}; "
          f"{tolerance_text(outcome.gpu)}; timing/memory shown as rerun/original ratios, not judged")
    if outcome.original.device and outcome.rerun_device and \
            outcome.original.device.split(":")[0] != outcome.rerun_device.split(":")[0]:
        print(f"note: the original ran on {outcome.original.device}, the rerun on {outcome.rerun_device}: results may "
              "legitimately differ across device kinds; rerun on the original kind for a strict check")
    print(format_rows(outcome.rows))
    judged = [r for r in outcome.rows if r.judged]
    bad = [r.metric for r in judged if not r.ok]
    if bad:
        print(f"NOT REPRODUCED: {len(bad)} of {len(judged)} judged values differ ({', '.join(bad)}); rerun outputs in {outcome.output_dir}")
        return 1
    print(f"reproduced: all {len(judged)} judged values match; rerun outputs in {outcome.output_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
