"""The trial configs of an experiment's search space, as the sweep would build them: the whole grid when the space
is discrete (sweep.orchestration.space.grid), a seeded random sample otherwise (a continuous float, a conditional
parameter, or a grid larger than `max_grid`). Each point becomes a TrialConfig through compose.trial_dict, the
function the sweep's dispatch uses, so a planned config is the config a trial would run.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any

from sweep.config.compose import RunConfig, trial_dict
from sweep.config.schema import TrialConfig

MAX_GRID = 5000  # more grid points than this are sampled instead


@dataclass(frozen=True)
class SpaceConfigs:
    points: tuple[tuple[dict[str, Any], TrialConfig], ...]  # (sampled parameters, the trial config)
    how: str  # "grid" | "sample"
    space_size: int | None  # grid points (None: continuous)
    seed: int | None

    def describe(self) -> str:
        n = len(self.points)
        if self.how == "grid":
            return f"{n} config{'s' if n != 1 else ''} (the whole grid)"
        of = f"{self.space_size}" if self.space_size else "a continuous space"
        return f"{n} configs sampled at random from {of} (seed {self.seed}; --sample N, --seed S)"


def _discrete(run: RunConfig) -> bool:
    return all(not s.when and (s.type != "float" or s.step is not None) for s in run.sweep.space.values())


def _grid_points(run: RunConfig) -> list[dict[str, Any]]:
    from sweep.orchestration.space import grid

    space = run.sweep.space
    values = grid(space)
    decoded = {}
    for key, vals in values.items():
        choices = space[key].choices
        if choices is None:
            decoded[key] = vals
        else:  # grid() encodes list-valued choices as JSON; keep the choice itself
            decoded[key] = [next((c for c in choices if json.dumps(c) == v), v) if isinstance(v, str) else v
                            for v in vals]
    keys = list(decoded)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(decoded[k] for k in keys))]


def _sampled_points(run: RunConfig, n: int, seed: int) -> list[dict[str, Any]]:
    import optuna

    from sweep.orchestration.space import suggest

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out, seen = [], set()
    for _ in range(20 * n):
        if len(out) >= n:
            break
        params = suggest(study.ask(), run.sweep.space, run.trial_base)
        key = json.dumps(params, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(params)
    return out


def space_configs(run: RunConfig, *, sample: int = 24, seed: int = 0, max_grid: int = MAX_GRID) -> SpaceConfigs:
    """Every config of `run`'s search space (grid), or `sample` of them drawn with `seed`."""
    from sweep.orchestration.space import grid_size, group_params

    space = run.sweep.space
    if not space:
        return SpaceConfigs(((({}, run.trial)),), "grid", 1, None)
    size = grid_size(space) if _discrete(run) else None
    if size is not None and size <= max_grid:
        how, points = "grid", _grid_points(run)
    else:
        how, points = "sample", _sampled_points(run, sample, seed)
    groups = group_params(space)
    built = tuple((p, TrialConfig.from_dict(trial_dict(run.overrides, p, groups, config_dirs=run.config_dirs)))
                  for p in points)
    return SpaceConfigs(built, how, size, seed if how == "sample" else None)
