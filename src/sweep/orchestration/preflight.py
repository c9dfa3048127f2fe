"""Checks that need the model's structure, done before any worker starts or any model is trained.

The base config's adapter plan is built against the model's module inventory (meta
device: no weights), every explicit target list and group option in the search
space is tried, and every space key must name an existing config key.
"""

from __future__ import annotations

from sweep.config.compose import RunConfig, compose_dict, get_path
from sweep.config.errors import ConfigError, Problems


def preflight(run: RunConfig) -> None:
    from sweep import adapters
    from sweep.config.schema import LoraConfig, TrialConfig
    from sweep.models.loader import inventory

    p = Problems()
    base = run.trial_base
    space = run.sweep.space
    for key, spec in space.items():
        if spec.type == "group":
            for choice in spec.choices:
                try:
                    composed = compose_dict([*run.overrides, f"{key}={choice}"], run.config_dirs)
                    TrialConfig.from_dict({**base, key: composed[key]})
                except ConfigError as exc:
                    p.add(f"sweep.space.{key}", f"option {choice!r}: {exc.problems[0]}")
            continue
        parent, _, last = key.rpartition(".")
        head = parent if last.isdigit() else key
        group, _, rest = head.partition(".")
        if group not in base or (rest and rest.split(".")[0] not in base[group]):
            p.add(f"sweep.space.{key}", f"no config key {head!r} (keys of {group}: {', '.join(base.get(group, {}))})")
    p.raise_if_any()
    trial = run.trial
    num_labels = 2 if trial.data.task == "classification" else None
    inv = inventory(trial.model, trial.data.task, num_labels)
    adapters.plan(trial.lora, inv)
    spec = space.get("lora.targets")
    if spec is not None and spec.choices:
        for choice in spec.choices:
            lora = LoraConfig(**{**run.raw["lora"], "targets": choice})
            try:
                adapters.plan(lora, inv)
            except ConfigError as exc:
                p.add("sweep.space.lora.targets", f"choice {choice!r}: {exc.problems[0]}")
    for key, want in ((k, s.when) for k, s in space.items() if s.when):
        for cond in want:
            if cond not in space and get_path(base, cond) is None and cond.split(".")[0] not in base:
                p.add(f"sweep.space.{key}.when", f"{cond!r} is neither a space parameter nor a config key")
    p.raise_if_any()
