"""The top layer: Hydra composition and the one place that reads DictConfig.

`compose(overrides)` returns a typed `RunConfig`; `trial_dict(...)` re-composes the
base overrides plus a trial's sampled parameters into a plain resolved dict, which
is what workers receive and what the config hash covers.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweep.config.errors import ConfigError, Problems
from sweep.config.schema import TrialConfig
from sweep.config.typed import build

TRIAL_GROUPS = ("model", "data", "lora", "quant", "train")
ROOT_KEYS = (*TRIAL_GROUPS, "sweep", "tracking", "cost", "name", "tags")


def conf_dir() -> Path:
    """The `conf/` folder: $LORASWEEP_CONF, else ./conf, else the one beside the source tree."""
    env = os.environ.get("LORASWEEP_CONF")
    if env:
        return Path(env).resolve()
    here = Path.cwd() / "conf"
    if (here / "config.yaml").is_file():
        return here.resolve()
    return (Path(__file__).resolve().parents[3] / "conf").resolve()


@dataclass
class RunConfig:
    """A composed, validated root config."""

    name: str
    trial: TrialConfig
    sweep: Any  # SweepConfig
    tracking: Any  # TrackingConfig
    cost: dict
    tags: dict
    overrides: list[str] = field(default_factory=list)
    raw: dict = field(default_factory=dict)  # the resolved plain dict (for logging)

    @property
    def study_name(self) -> str:
        return self.sweep.study_name or self.name


def _hydra_message(exc: Exception) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return msg


def compose_dict(overrides: list[str], config_name: str = "config", conf: Path | None = None) -> dict:
    """Compose `<conf>/<config_name>.yaml` (default: `conf_dir()`) with Hydra overrides into a resolved
    plain dict (a fresh copy)."""
    import copy

    return copy.deepcopy(_compose_cached(tuple(overrides), config_name, str(conf or conf_dir())))


@functools.lru_cache(maxsize=64)
def _compose_cached(overrides: tuple[str, ...], config_name: str, conf: str) -> dict:
    """Hydra composition is ~70 ms; a sweep re-composes the same few override sets for every trial."""
    return _compose_uncached(list(overrides), config_name, Path(conf))


def _compose_uncached(overrides: list[str], config_name: str, cdir: Path) -> dict:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    if not (cdir / f"{config_name}.yaml").is_file():
        raise ConfigError([f"config: no {config_name}.yaml in {cdir} (run from the repository root or set LORASWEEP_CONF)"])
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(cdir), version_base="1.3"):
            cfg = hydra_compose(config_name=config_name, overrides=list(overrides))
        resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except ConfigError:
        raise
    except Exception as exc:  # Hydra/OmegaConf: malformed override, unknown option, bad interpolation
        bad = _which_override(overrides, exc)
        key = f"override {bad!r}" if bad else "config"
        raise ConfigError([f"{key}: {_hydra_message(exc)} (check the spelling; `python -m sweep --help` lists the groups)"]) from None
    finally:
        GlobalHydra.instance().clear()
    return resolved


def _which_override(overrides: list[str], exc: Exception) -> str | None:
    text = str(exc)
    for ov in overrides:
        key = re.split(r"[=~]", ov.lstrip("+~"), maxsplit=1)[0]
        if ov in text or (key and re.search(rf"\b{re.escape(key)}\b", text)):
            return ov
    return None


def parse(resolved: dict, overrides: list[str] | None = None) -> RunConfig:
    """Typed RunConfig from a resolved dict; every problem of every group reported together."""
    from sweep.config.run_schema import SweepConfig, TrackingConfig

    p = Problems()
    for k in sorted(set(resolved) - set(ROOT_KEYS)):
        p.add(k, f"unknown top-level key (known: {', '.join(ROOT_KEYS)})")
    trial_part = {k: resolved[k] for k in TRIAL_GROUPS if k in resolved}
    trial = None
    try:
        trial = TrialConfig.from_dict(trial_part)
    except ConfigError as exc:
        p.extend(exc.problems)
    sweep_cfg = build(SweepConfig, resolved.get("sweep", {}), "sweep", p)
    tracking = build(TrackingConfig, resolved.get("tracking", {}), "tracking", p)
    if "cost" in resolved:
        from sweep.report.cost import CostConfig

        build(CostConfig, resolved["cost"], "cost", p)
    p.raise_if_any()
    return RunConfig(
        name=str(resolved.get("name") or "default"),
        trial=trial,
        sweep=sweep_cfg,
        tracking=tracking,
        cost=dict(resolved.get("cost") or {}),
        tags=dict(resolved.get("tags") or {}),
        overrides=list(overrides or []),
        raw=resolved,
    )


def compose(overrides: list[str] | None = None) -> RunConfig:
    """Compose and validate the root config with command-line overrides."""
    overrides = list(overrides or [])
    return parse(compose_dict(overrides), overrides)


def _override_key(ov: str) -> str:
    return re.split(r"[=~]", ov.lstrip("+~"), maxsplit=1)[0]


def _set_path(d: dict, dotted: str, value: Any) -> None:
    """Set `a.b.c` (or `a.b.0` for a list element) in a nested dict."""
    parts = dotted.split(".")
    node = d
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if node.get(part) is None:
            node[part] = [] if nxt.isdigit() else {}
        node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        idx = int(last)
        while len(node) <= idx:
            node.append(None)
        node[idx] = value
    else:
        node[last] = value


def _get_path(d: dict, dotted: str) -> Any:
    node: Any = d
    for part in dotted.split("."):
        if isinstance(node, list) and part.isdigit():
            node = node[int(part)] if int(part) < len(node) else None
        elif isinstance(node, dict):
            node = node.get(part)
        else:
            return None
    return node


def trial_dict(base_overrides: list[str], params: dict[str, Any], group_params: set[str], conf: Path | None = None) -> dict:
    """The resolved trial config for a set of sampled params.

    `group_params` names params that choose a config-group option (e.g. `quant: nf4`);
    they are applied as Hydra overrides. Every other param sets a config value by its
    dotted path (`lora.r`, `lora.band_ranks.0`). Lists set element-wise are trimmed of
    unset tail entries. `conf` is the config folder to compose from (a sweep passes its snapshot).
    """
    group_keys = {k for k in params if k in group_params}
    overrides = [ov for ov in base_overrides if _override_key(ov) not in group_keys]
    overrides += [f"{k}={params[k]}" for k in sorted(group_keys)]
    resolved = compose_dict(overrides, conf=conf)
    for k, v in params.items():
        if k in group_keys:
            continue
        if k.split(".")[0] not in TRIAL_GROUPS:
            raise ConfigError([f"sweep.space.{k}: not a trial config key (keys start with one of {', '.join(TRIAL_GROUPS)})"])
        parent, _, last = k.rpartition(".")
        if last.isdigit():
            existing = _get_path(resolved, parent)
            if not isinstance(existing, list):
                _set_path(resolved, parent, [])
        _set_path(resolved, k, v)
    return {g: resolved[g] for g in TRIAL_GROUPS}


def get_path(d: dict, dotted: str) -> Any:
    """Public read of a dotted path in a resolved dict."""
    return _get_path(d, dotted)
