"""The config hash: a stable short name for "this exact trial configuration".

Computed from the canonical JSON of the resolved TrialConfig (sorted keys, no
whitespace, floats in shortest round-trip form), so it is identical across
processes, machines and Python hash seeds. Keys that say where or how fast a
trial runs, not what it computes, are left out.

The hash must survive the schema's growth: existing studies reuse, resume and
reproduce their trials by it, so a new field whose default keeps today's
behaviour must not move any hash. Such a field is registered in INTRODUCED with
that default; at that value it is left out of the hashed form, set to anything
else it is hashed.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# runtime knobs: they choose resources, not the experiment
EXCLUDED_KEYS = frozenset({"train.device", "train.threads"})
HASH_LENGTH = 12

# Fields added to the trial config after configs were first hashed, each with its introduction default: the value
# that does what configs without the field did. A field at that value is left out of the hashed form, so adding it
# leaves every existing hash as it was (and every existing study reusing, resuming and reproducing its own trials);
# set to any other value it is hashed. A new trial-config field goes here in the same change that adds it, one comment
# per entry: when it came and why that value is the old behaviour.
#   * Keys are dotted paths of the trial dict ("train.optimizer", "data.generation.top_k"); a path reaches into dicts,
#     not into list elements (a list is one value, compared whole).
#   * Values are compared in hashed form (1.0 == 1, but False != 0 and None != 0). A dict-valued entry is compared
#     after its own registered sub-fields at their defaults are dropped, so a field added later inside a registered
#     dict (a group of generation settings) only needs its own entry.
#   * The entry keeps the introduction default even if the schema's default changes later: configs that never set
#     the field meant that value. Never edit or remove an entry: it would move the hash of every config at that value.
# Fields added before this registry (data.prompt_format, model.gguf_file, train.eval_subset and the adaptive latency
# keys train.latency_min_iters/latency_max_iters/latency_rel_ci, 2026-11-23/24) each moved every hash once then; they
# stay plainly hashed, as today's hashes include them.
INTRODUCED: dict[str, Any] = {
    # 2026-12-04, issue 19: the optimizer became a config key. Before it, TrainingArguments chose its own default, which
    # is adamw_torch_fused with the torch >= 2.8 the project runs on (transformers' `default_optim`); the trial now
    # passes that same name explicitly.
    "train.optimizer": "adamw_torch_fused",
    # 2026-12-04, issue 19: LoRA+ (PEFT's create_loraplus_optimizer). null = off: one learning rate for A and B, the
    # Trainer's own optimizer, as before.
    "lora.loraplus_lr_ratio": None,
}

_ABSENT = object()  # a key left out of the hashed form


def _text(v: Any) -> str:
    return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _hashed(v: Any, path: str) -> Any:
    """`v` (at dotted `path`) in hashed form, or _ABSENT: a runtime knob, or a field at its introduction default."""
    if path in EXCLUDED_KEYS:
        return _ABSENT
    form = _form(v, path)
    if path in INTRODUCED and _text(form) == _text(_form(INTRODUCED[path], path)):
        return _ABSENT
    return form


def _form(v: Any, path: str) -> Any:
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            h = _hashed(x, f"{path}.{k}" if path else str(k))
            if h is not _ABSENT:
                out[str(k)] = h
        return out
    return _normalise(v)


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
    """The canonical text the hash is taken over (runtime knobs and fields at their introduction default left out)."""
    return _text(_form(trial_dict, ""))


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
