"""The module inventory of a model, cached on disk: building it needs transformers and torch (seconds of imports)
before any worker may start, and it only changes when the model's architecture does.

Keyed by the model config, the task, the label count, the transformers version and the size and mtime of the
files that define the architecture (config.json, a GGUF file). Stored under $LORASWEEP_CACHE (default
~/.cache/lorasweep)/inventory/<key>.json, written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

from sweep.config.schema import ModelConfig
from sweep.models.targets import Inventory, LinearModule


def cache_root() -> Path:
    return Path(os.environ.get("LORASWEEP_CACHE", Path.home() / ".cache" / "lorasweep"))


def _defining_files(model: ModelConfig) -> list[str]:
    """size:mtime of the files an architecture is read from (a change to them invalidates the entry)."""
    out = []
    for candidate in (model.path, getattr(model, "gguf_file", None)):
        if candidate and Path(candidate).exists():
            p = Path(candidate)
            f = p / "config.json" if p.is_dir() else p
            if f.is_file():
                st = f.stat()
                out.append(f"{f.resolve()}:{st.st_size}:{st.st_mtime_ns}")
    if model.source == "hub":
        from sweep.models.configs import shipped_config_dir

        shipped = shipped_config_dir(model.path)
        if shipped is not None:
            st = (shipped / "config.json").stat()
            out.append(f"{shipped / 'config.json'}:{st.st_size}:{st.st_mtime_ns}")
    if model.source == "packaged":
        try:
            from sweep.models.loader import packaged_path

            f = packaged_path(model.package) / "config.json"
            st = f.stat()
            out.append(f"{f}:{st.st_size}:{st.st_mtime_ns}")
        except Exception:  # not installed: the uncached path raises the one-line error
            out.append("missing")
    return out


def _key(model: ModelConfig, task: str, num_labels: int | None) -> str:
    try:
        version = metadata.version("transformers")
    except metadata.PackageNotFoundError:
        version = "?"
    blob = json.dumps([asdict(model), task, num_labels, version, _defining_files(model)], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def cached_inventory(model: ModelConfig, task: str, num_labels: int | None = 2) -> Inventory:
    path = cache_root() / "inventory" / f"{_key(model, task, num_labels)}.json"
    try:
        data = json.loads(path.read_text())
        return Inventory(data["model_type"], tuple(LinearModule(**m) for m in data["linears"]), data["num_layers"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    from sweep.models.loader import inventory

    inv = inventory(model, task, num_labels)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".inventory-")
        with os.fdopen(fd, "w") as fh:
            json.dump({"model_type": inv.model_type, "linears": [asdict(m) for m in inv.linears],
                       "num_layers": inv.num_layers}, fh)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: no cache, the same answer next time, only slower
    return inv
