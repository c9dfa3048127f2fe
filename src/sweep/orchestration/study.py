"""The Optuna study: storage (sqlite by default, any RDB URL), sampler, pruner, directions.

Directions come from the metric table. The storage is an RDBStorage with heartbeats,
so a trial whose process or machine died is failed by whichever coordinator looks
next (`fail_stale_trials`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from sweep import metrics
from sweep.config.errors import ConfigError
from sweep.orchestration import space as sp
from sweep.retry import STARTUP_DELAYS, retry_while


def storage_url(storage: str | None, output_dir: str, study_name: str) -> str:
    if storage:
        return storage
    folder = Path(output_dir) / study_name
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(folder / 'study.db').resolve()}"


def make_storage(url: str, *, heartbeat_interval: int, grace_period: int,
                 failed_trial_callback: Callable | None = None):
    import optuna

    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    try:  # another machine may be creating the schema right now
        return retry_while(lambda: optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs,
                                                              heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                                                              failed_trial_callback=failed_trial_callback),
                           markers=("already exists", "duplicate key", "locked"), delays=STARTUP_DELAYS)
    except Exception as exc:  # corrupt file, unreachable server, missing driver
        text = " ".join(str(exc).split())
        raise ConfigError([f"sweep.storage: cannot open Optuna storage {url!r}: {text[:300]} "
                           "(fix the URL, start the server, or move the corrupt file away to start a new study)"]) from None


def make_sampler(sweep_cfg):
    import optuna

    name, seed = sweep_cfg.sampler, sweep_cfg.sampler_seed
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=sweep_cfg.n_startup_trials, multivariate=True,
                                          group=True, constant_liar=True)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    class AskTellGridSampler(optuna.samplers.GridSampler):
        """GridSampler whose after_trial does not call study.stop(), which only works inside optimize();
        the coordinator stops by counting trials instead."""

        def after_trial(self, study, trial, state, values) -> None:
            return None

    try:
        return AskTellGridSampler(sp.grid(sweep_cfg.space), seed=seed)
    except ValueError as exc:
        raise ConfigError([str(exc)]) from None


def make_pruner(sweep_cfg):
    import optuna

    if sweep_cfg.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=sweep_cfg.pruner_warmup_steps)
    if sweep_cfg.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def open_study(sweep_cfg, study_name: str, storage):
    """Create or load the study; an existing study with other objectives is an error."""
    import optuna

    directions = metrics.objective_directions(sweep_cfg.objectives)
    study = optuna.create_study(storage=storage, study_name=study_name, directions=directions,
                                sampler=make_sampler(sweep_cfg), pruner=make_pruner(sweep_cfg), load_if_exists=True)
    have = [d.name.lower() for d in study.directions]
    want = ["maximize" if d == "maximize" else "minimize" for d in directions]
    if have != want:
        raise ConfigError([f"sweep.objectives: study {study_name!r} exists with directions {have}, the config asks {want} "
                           "(use another sweep.study_name or restore the objectives)"])
    objectives = study.user_attrs.get("objectives")
    if objectives is None:
        study.set_user_attr("objectives", list(sweep_cfg.objectives))
    elif list(objectives) != list(sweep_cfg.objectives):
        raise ConfigError([f"sweep.objectives: study {study_name!r} optimises {objectives}, the config asks {sweep_cfg.objectives} "
                           "(use another sweep.study_name)"])
    return study
