"""A trial's outputs shipped from a worker that cannot write the coordinator's folder (a Ray actor on another node).

The worker runs the trial in a node-local temporary folder, logs its artifacts to MLflow (worker.execute does),
then `pack`s the folder's files into the message it returns; the coordinator `unpack`s them into the real trial
folder, `sweeps/<study>/trials/<number>-<hash>/`, with `result.json` pointing at that folder and `artifacts.json`
naming the MLflow run and its artifact URI. So the folder is complete on the coordinator's machine whether or not
MLflow is on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from sweep.results import TrialResult, TrialStatus
from sweep.text import one_line

ARTIFACTS = "artifacts.json"  # where the trial's MLflow artifacts live (run id, artifact URI, tracking URI)


def pack(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`, by relative path (result.json included; rewritten by `unpack`)."""
    out = {}
    for root, _dirs, files in os.walk(folder):
        for name in files:
            path = Path(root) / name
            out[str(path.relative_to(folder))] = path.read_bytes()
    return out


def unpack(result: TrialResult, files: dict[str, bytes], folder: Path, artifacts: dict[str, str] | None) -> TrialResult:
    """Write the shipped files into the trial folder on this machine; a folder that cannot be written (full disk)
    fails the trial, as it does on a local worker."""
    result.output_dir = str(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for rel, data in files.items():
            path = folder / rel
            if folder.resolve() not in path.resolve().parents:
                continue  # never outside the trial folder
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        if artifacts and artifacts.get("run_id"):
            (folder / ARTIFACTS).write_text(json.dumps(artifacts, indent=2, sort_keys=True))
        if "result.json" in files:
            result.save(folder / "result.json")
    except OSError as exc:
        kind = "disk full" if "No space left" in str(exc) else "disk"
        result.status, result.error = TrialStatus.FAILED, f"{kind}: cannot write the trial folder {folder}: {one_line(exc, 200)}"
    return result
