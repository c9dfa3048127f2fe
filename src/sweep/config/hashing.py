"""The config hash: a stable short name for "this exact trial configuration".

Computed from the canonical JSON of the resolved TrialConfig (sorted keys, no
whitespace, floats in shortest round-trip form), so it is identical across
processes, machines and Python hash seeds. Keys that say where or how fast a
trial runs, not what it computes, are left out.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# runtime knobs: they choose resources, not the experiment
EXCLUDED_KEYS = frozenset({"train.device", "train.threads"})
HASH_LENGTH = 12


def _drop(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if key in EXCLUDED_KEYS:
            continue
        out[k] = _drop(v, f"{key}.") if isinstance(v, dict) and key.count(".") == 0 else _normalise(v)
    return out


def _normalise(v: Any) -> Any:
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return int(v) if v.is_integer() else v
    if isinstance(v, (list, tuple)):
        return [_normalise(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _normalise(x) for k, x in sorted(v.items())}
    return str(v)


def canonical_json(trial_dict: dict) -> str:
    """The canonical text the hash is taken over."""
    return json.dumps(_drop(trial_dict), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def hash_dict(trial_dict: dict) -> str:
    return hashlib.sha256(canonical_json(trial_dict).encode()).hexdigest()[:HASH_LENGTH]


def write_config(folder, trial_dict: dict) -> None:
    """A trial folder's config.yaml (the folder is made if missing): what `python -m sweep.reproduce` and a rerun
    read back. libyaml's emitter when PyYAML has it (the same text, about 4x faster than the pure-Python one)."""
    from pathlib import Path

    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / "config.yaml").write_text(yaml.dump(trial_dict, Dumper=dumper, sort_keys=False))


def config_hash(cfg: Any) -> str:
    """Hash of a TrialConfig (or of its dict form)."""
    return hash_dict(cfg if isinstance(cfg, dict) else cfg.to_dict())
