"""The top layer: Hydra composition and the one place that reads DictConfig.

`compose(overrides)` returns a typed `RunConfig`; `trial_dict(...)` re-composes the
base overrides plus a trial's sampled parameters into a plain resolved dict, which
is what workers receive and what the config hash covers.

The shipped config groups are the package data `sweep.conf` (the repository's conf/).
A user adds groups and experiments of their own with `--config-dir DIR` (Hydra's
convention): DIR is put on the search path after the shipped folder, so its files sit
beside the shipped ones; a file that would shadow a shipped one is an error.
"""

from __future__ import annotations

import copy
import functools
import importlib.resources
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweep.config.cost import CostConfig
from sweep.config.errors import ConfigError, Problems
from sweep.config.run_schema import SweepConfig, TrackingConfig
from sweep.config.schema import TRIAL_GROUPS, TrialConfig
from sweep.config.typed import build

ROOT_KEYS = (*TRIAL_GROUPS, "sweep", "tracking", "cost", "name", "tags")
CONF_ENV = "LORASWEEP_CONF"  # replaces the shipped config folder (tests, a sweep's snapshot)


def conf_dir() -> Path:
    """The shipped config folder: the package data `sweep.conf` (or $LORASWEEP_CONF)."""
    env = os.environ.get(CONF_ENV)
    if env:
        return Path(env).resolve()
    return Path(str(importlib.resources.files("sweep.conf"))).resolve()


@dataclass
class RunConfig:
    """A composed, validated root config."""

    name: str
    trial: TrialConfig
    sweep: SweepConfig
    tracking: TrackingConfig
    cost: CostConfig
    tags: dict
    overrides: list[str] = field(default_factory=list)
    config_dirs: list[str] = field(default_factory=list)  # the user's folders on the search path (absolute)
    raw: dict = field(default_factory=dict)  # the resolved plain dict (for logging)

    @property
    def study_name(self) -> str:
        """The Optuna study and the folder name (sweeps/<study>/, reports/<study>/): held to sweep/names.py's rule."""
        return self.sweep.study_name or self.name

    @property
    def experiment_name(self) -> str:
        """The MLflow experiment: `sweep.experiment_name` (may contain /), else the study name."""
        return self.sweep.experiment_name or self.study_name

    @property
    def trial_base(self) -> dict:
        """The resolved trial groups before any sampled parameter."""
        return {g: self.raw[g] for g in TRIAL_GROUPS}


def user_dirs(config_dirs: list[str] | tuple[str, ...]) -> list[str]:
    """Absolute user config folders; a missing folder or a file shadowing a shipped one is an error."""
    shipped = conf_dir()
    out, p = [], Problems()
    for d in config_dirs:
        path = Path(d).expanduser().resolve()
        if not path.is_dir():
            p.add("--config-dir", f"no folder {path} (give a folder holding config groups, e.g. my_conf/experiment/x.yaml)")
            continue
        for f in sorted(path.rglob("*.yaml")):
            rel = f.relative_to(path)
            if (shipped / rel).is_file():
                p.add("--config-dir", f"{f} has the name of a shipped config ({rel}); rename it (e.g. "
                      f"{rel.parent / ('my_' + rel.name)}) and select it by that name")
        out.append(str(path))
    p.raise_if_any()
    return out


def compose_dict(overrides: list[str], config_dirs: list[str] | tuple[str, ...] = (), conf: Path | None = None) -> dict:
    """Compose `<conf>/config.yaml` (default: `conf_dir()`) plus the user folders with Hydra overrides into a
    resolved plain dict (a fresh copy)."""
    return copy.deepcopy(_compose_cached(tuple(overrides), tuple(config_dirs), str(conf or conf_dir())))


@functools.lru_cache(maxsize=64)
def _compose_cached(overrides: tuple[str, ...], config_dirs: tuple[str, ...], conf: str) -> dict:
    """Hydra composition is ~70 ms; a sweep re-composes the same few override sets for every trial."""
    return _compose_uncached(list(overrides), list(config_dirs), Path(conf))


def _compose_uncached(overrides: list[str], config_dirs: list[str], cdir: Path) -> dict:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    if not (cdir / "config.yaml").is_file():
        raise ConfigError([f"config: no config.yaml in {cdir} (reinstall lorasweep, or unset {CONF_ENV})"])
    search = [f"hydra.searchpath=[{','.join('file://' + d for d in config_dirs)}]"] if config_dirs else []
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(cdir), version_base="1.3"):
            cfg = hydra_compose(config_name="config", overrides=[*search, *overrides])
        resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except Exception as exc:  # Hydra/OmegaConf: malformed override, unknown option, bad interpolation
        bad = _which_override(overrides, exc)
        named = _path_name_override(bad)
        if named:  # e.g. a control character Hydra's parser cannot read: say what a name may hold
            raise ConfigError([named]) from None
        key = f"override {bad!r}" if bad else "config"
        text = _unknown_key(exc, bad, overrides, config_dirs, cdir) or (
            f"{_first_line(exc)} (check the spelling; `python -m sweep --help` lists the groups)")
        raise ConfigError([f"{key}: {text}"]) from None
    finally:
        GlobalHydra.instance().clear()
    return resolved


def _unknown_key(exc: Exception, bad: str | None, overrides: list[str], config_dirs: list[str], cdir: Path) -> str | None:
    """For an override of a key the config does not have: the known keys beside it."""
    m = re.search(r"Could not override '([^']+)'", str(exc))
    if not (m and bad and "not in struct" in str(exc.__cause__)):
        return None
    key = m.group(1)
    parent = key.rpartition(".")[0]
    try:
        node = get_path(_compose_cached(tuple(o for o in overrides if o != bad), tuple(config_dirs), str(cdir)), parent) \
            if parent else None
    except ConfigError:
        return None
    if not isinstance(node, dict):
        return None
    return f"unknown key {key!r} (known keys of {parent}: {', '.join(sorted(node))}; to add a new key use +{bad})"


PATH_NAME_KEYS = ("sweep.study_name", "name")  # values that become folder names (sweep/names.py)


def _path_name_override(ov: str | None) -> str | None:
    """For an override of a name (a folder name or the MLflow experiment name), the name rule's problem with its
    value, if any."""
    from sweep import names

    key = override_key(ov) if ov and "=" in ov else None
    if key in PATH_NAME_KEYS:
        return names.path_name_problem(key, ov.split("=", 1)[1])
    if key == "sweep.experiment_name":
        return names.display_name_problem(key, ov.split("=", 1)[1])
    return None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def override_key(ov: str) -> str:
    """The dotted key an override sets (`+lora.r=4` -> `lora.r`)."""
    return re.split(r"[=~]", ov.lstrip("+~"), maxsplit=1)[0]


def _which_override(overrides: list[str], exc: Exception) -> str | None:
    text = str(exc)
    for ov in overrides:
        key = override_key(ov)
        if ov in text or (key and re.search(rf"\b{re.escape(key)}\b", text)):
            return ov
    return None


def parse(resolved: dict, overrides: list[str] | None = None, config_dirs: list[str] | None = None) -> RunConfig:
    """Typed RunConfig from a resolved dict; every problem of every group reported together."""
    p = Problems()
    for k in sorted(set(resolved) - set(ROOT_KEYS)):
        p.add(k, f"unknown top-level key (known: {', '.join(ROOT_KEYS)})")
    trial = None
    try:
        trial = TrialConfig.from_dict({k: resolved[k] for k in TRIAL_GROUPS if k in resolved})
    except ConfigError as exc:
        p.extend(exc.problems)
    sweep_cfg = build(SweepConfig, resolved.get("sweep", {}), "sweep", p)
    tracking = build(TrackingConfig, resolved.get("tracking", {}), "tracking", p)
    cost = build(CostConfig, resolved.get("cost", {}), "cost", p)
    if trial is not None and sweep_cfg is not None and sweep_cfg.pruner != "none":
        if trial.train.eval_every == 0:
            p.add("sweep.pruner", f"{sweep_cfg.pruner} needs intermediate evaluations: set train.eval_every (e.g. "
                  "train.eval_every=50) or sweep.pruner=none")
        if len(sweep_cfg.objectives) > 1:
            p.add("sweep.pruner", "Optuna cannot prune a study with several objectives: set sweep.pruner=none or keep "
                  "one objective")
    name = "default" if resolved.get("name") is None else str(resolved["name"])
    if sweep_cfg is not None:  # the study name becomes folders: sweeps/<study>/, reports/<study>/
        from sweep.names import path_name_problem

        key, value = ("sweep.study_name", sweep_cfg.study_name) if sweep_cfg.study_name is not None else ("name", name)
        nested = isinstance(value, str) and "/" in value and ".." not in value and not value.startswith("/")
        hint = "; a / belongs in sweep.experiment_name, the MLflow experiment name" if nested else ""
        problem = path_name_problem(key, value, hint)
        if problem:
            p.extend([problem])
    p.raise_if_any()
    return RunConfig(name=name, trial=trial, sweep=sweep_cfg, tracking=tracking,
                     cost=cost, tags=dict(resolved.get("tags") or {}), overrides=list(overrides or []),
                     config_dirs=list(config_dirs or []), raw=resolved)


def compose(overrides: list[str] | None = None, config_dirs: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Compose and validate the root config with command-line overrides (and the user's config folders)."""
    overrides = list(overrides or [])
    dirs = user_dirs(config_dirs)
    return parse(compose_dict(overrides, dirs), overrides, dirs)


def split_config_dirs(argv: list[str]) -> tuple[list[str], list[str]]:
    """(`--config-dir`/`-cd` folders, the other arguments) of a command line."""
    dirs, rest, it = [], [], iter(argv)
    for a in it:
        if a in ("--config-dir", "-cd"):
            value = next(it, None)
            if value is None:
                raise ConfigError(["--config-dir: needs a folder (python -m sweep --config-dir ./my_conf +experiment=NAME)"])
            dirs.append(value)
        elif a.startswith("--config-dir="):
            dirs.append(a.split("=", 1)[1])
        else:
            rest.append(a)
    return dirs, rest


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


def get_path(d: dict, dotted: str) -> Any:
    """Read a dotted path (`lora.r`, `lora.band_ranks.0`) of a resolved dict; None when absent."""
    node: Any = d
    for part in dotted.split("."):
        if isinstance(node, list) and part.isdigit():
            node = node[int(part)] if int(part) < len(node) else None
        elif isinstance(node, dict):
            node = node.get(part)
        else:
            return None
    return node


def trial_dict(base_overrides: list[str], params: dict[str, Any], group_params: set[str], conf: Path | None = None,
               config_dirs: list[str] | tuple[str, ...] = ()) -> dict:
    """The resolved trial config for a set of sampled params.

    `group_params` names params that choose a config-group option (e.g. `quant: nf4`);
    they are applied as Hydra overrides. Every other param sets a config value by its
    dotted path (`lora.r`, `lora.band_ranks.0`). `conf` / `config_dirs` are the folders
    to compose from (a sweep passes its snapshot).
    """
    group_keys = {k for k in params if k in group_params}
    overrides = [ov for ov in base_overrides if override_key(ov) not in group_keys]
    overrides += [f"{k}={params[k]}" for k in sorted(group_keys)]
    resolved = compose_dict(overrides, config_dirs, conf=conf)
    for k, v in params.items():
        if k in group_keys:
            continue
        if k.split(".")[0] not in TRIAL_GROUPS:
            raise ConfigError([f"sweep.space.{k}: not a trial config key (keys start with one of {', '.join(TRIAL_GROUPS)})"])
        parent, _, last = k.rpartition(".")
        if last.isdigit() and not isinstance(get_path(resolved, parent), list):
            _set_path(resolved, parent, [])
        _set_path(resolved, k, v)
    return {g: resolved[g] for g in TRIAL_GROUPS}
