"""Search spaces declared in the experiment config, sampled through Optuna's define-by-run API.

Keys are config paths (`lora.r`, `lora.band_ranks.0`) or group names (`quant`,
with type `group`). `when: {lora: layerwise}` makes a parameter conditional on an
earlier parameter (or a base-config value). List-valued categorical choices (an
explicit target list) are encoded as JSON strings for Optuna and decoded back.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from sweep.config.compose import get_path
from sweep.config.run_schema import ParamSpec


def _encode(choice: Any) -> Any:
    return json.dumps(choice) if isinstance(choice, (list, dict)) else choice


def _decode(value: Any, choices: list[Any]) -> Any:
    for c in choices:
        if _encode(c) == value:
            return c
    return value


def encoded(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters as Optuna stores them (list-valued choices as their JSON text), e.g. to enqueue a trial."""
    return {k: _encode(v) for k, v in params.items()}


def group_params(space: dict[str, ParamSpec]) -> set[str]:
    return {k for k, s in space.items() if s.type == "group"}


def _active(spec: ParamSpec, params: dict[str, Any], base: dict) -> bool:
    for key, want in (spec.when or {}).items():
        have = params[key] if key in params else get_path(base, key)
        wanted = want if isinstance(want, list) else [want]
        if have not in wanted:
            return False
    return True


def suggest(trial, space: dict[str, ParamSpec], base: dict, fixed: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sample every active parameter of `space` for an Optuna trial (ask-and-tell or optimize). `fixed` are
    parameters decided elsewhere (a question arm's values): they count for `when` conditions, and are not returned."""
    params: dict[str, Any] = {}
    known = dict(fixed or {})
    for key, spec in space.items():
        if not _active(spec, {**known, **params}, base):
            continue
        if spec.type == "int":
            params[key] = trial.suggest_int(key, int(spec.low), int(spec.high), step=int(spec.step or 1), log=spec.log)
        elif spec.type == "float":
            params[key] = trial.suggest_float(key, float(spec.low), float(spec.high), step=spec.step, log=spec.log)
        else:
            value = trial.suggest_categorical(key, [_encode(c) for c in spec.choices])
            params[key] = _decode(value, spec.choices)
    return params


def distributions(space: dict[str, ParamSpec], params: dict[str, Any], base: dict) -> dict[str, Any]:
    """The Optuna distributions `suggest` would record for these parameters (chosen elsewhere), to write a trial
    with its parameters at once (SweepStudy.create_running)."""
    import optuna

    trial = optuna.trial.FixedTrial(encoded(params))
    suggest(trial, space, base)
    return trial.distributions


def grid(space: dict[str, ParamSpec]) -> dict[str, list[Any]]:
    """The search space in the form GridSampler wants (no conditional parameters)."""
    out: dict[str, list[Any]] = {}
    for key, spec in space.items():
        if spec.when:
            raise ValueError(f"sweep.space.{key}: the grid sampler cannot handle conditional parameters (drop `when` or use tpe)")
        if spec.type == "int":
            out[key] = list(range(int(spec.low), int(spec.high) + 1, int(spec.step or 1)))
        elif spec.type == "float":
            out[key] = [float(x) for x in np.arange(spec.low, spec.high + spec.step / 2, spec.step)]
        else:
            out[key] = [_encode(c) for c in spec.choices]
    return out


def grid_size(space: dict[str, ParamSpec]) -> int:
    return int(np.prod([len(v) for v in grid(space).values()])) if space else 1
