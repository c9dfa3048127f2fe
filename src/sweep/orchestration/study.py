"""The Optuna study: storage (sqlite by default, any RDB URL), sampler, pruner, directions, and the
handful of storage operations the coordinator needs: Optuna's storage interface below Study, which it
documents as not meant for library users (checked by sweep.private_api.check_optuna_storage; optuna is pinned).

Directions come from the metric table. The storage is an RDBStorage with heartbeats,
so a trial whose process or machine died is failed by whichever coordinator looks
next (`fail_stale_trials`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from sweep import metrics
from sweep.config.errors import ConfigError
from sweep.orchestration import records as R
from sweep.orchestration import space as sp
from sweep.private_api import check_optuna_storage
from sweep.retry import STARTUP_DELAYS, retry_while
from sweep.text import one_line

STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")
INFEASIBLE = "INFEASIBLE"  # Counts' key for trials ruled out before training (Optuna: PRUNED; not in "finished")


def storage_url(storage: str | None, output_dir: str, study_name: str) -> str:
    """The Optuna storage URL; the default sqlite file lives in <output_dir>/<study>/ (created by `make_storage`)."""
    if storage:
        return storage
    return f"sqlite:///{(Path(output_dir) / study_name / 'study.db').resolve()}"


def _check_url(url: str) -> None:
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if "://" not in url or scheme not in ("sqlite", "postgresql", "mysql", "oracle", "mssql"):
        raise ConfigError([f"sweep.storage: {url!r} is not an Optuna RDB storage URL (use sqlite:///path/study.db, "
                           "postgresql://user:pass@host/db or mysql://...; null = sqlite under sweeps/<study>/)"])


def make_storage(url: str, *, heartbeat_interval: int, grace_period: int, failed_trial_callback: Callable | None = None,
                 timeout_s: float = 60.0):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # its import set INFO: one line per trial is ours to print

    _check_url(url)
    if url.startswith("sqlite:///"):
        from sweep import sqlite

        sqlite.tune()
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    engine_kwargs = {"connect_args": {"timeout": timeout_s}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    try:  # another machine may be creating the schema right now
        return retry_while(lambda: optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs,
                                                              heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                                                              failed_trial_callback=failed_trial_callback),
                           markers=("already exists", "duplicate key", "UNIQUE constraint failed", "locked"), delays=STARTUP_DELAYS)
    except Exception as exc:  # corrupt file, unreachable server, missing driver
        raise ConfigError([f"sweep.storage: cannot open Optuna storage {url!r}: {one_line(exc, 300)} "
                           "(fix the URL, start the server, or move the corrupt file away to start a new study)"]) from None


def make_sampler(sweep_cfg, space: dict | None = None, seed_offset: int = 0):
    """The configured sampler over `space` (default: the whole search space)."""
    import optuna

    name, seed = sweep_cfg.sampler, sweep_cfg.sampler_seed + seed_offset
    space = sweep_cfg.space if space is None else space
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
        return AskTellGridSampler(sp.grid(space), seed=seed)
    except ValueError as exc:
        raise ConfigError([str(exc)]) from None


def make_pruner(sweep_cfg):
    import optuna

    if sweep_cfg.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=sweep_cfg.pruner_warmup_steps)
    if sweep_cfg.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def optuna_random(sweep_cfg):
    """The main study's sampler when question arms propose every trial (it only ever serves enqueued ones)."""
    import optuna

    return optuna.samplers.RandomSampler(seed=sweep_cfg.sampler_seed)


def optuna_nop():
    import optuna

    return optuna.pruners.NopPruner()


def open_study(sweep_cfg, study_name: str, storage, sampler=None, pruner=None):
    """Create or load the study (the configured sampler and pruner unless given); an existing study with other
    objectives is an error."""
    import optuna

    directions = metrics.objective_directions(sweep_cfg.objectives)
    try:
        study = optuna.create_study(storage=storage, study_name=study_name, directions=directions,
                                    sampler=sampler or make_sampler(sweep_cfg), pruner=pruner or make_pruner(sweep_cfg),
                                    load_if_exists=True)
    except ConfigError:
        raise
    except Exception as exc:  # a database that opened but is not an Optuna one, or a locked one
        raise ConfigError([f"sweep.storage: cannot open study {study_name!r}: {one_line(exc, 300)} (move the file away to "
                           "start a new study, or wait for the process holding the lock)"]) from None
    have = [d.name.lower() for d in study.directions]
    want = ["maximize" if d == "maximize" else "minimize" for d in directions]
    if have != want:
        raise ConfigError([f"sweep.objectives: study {study_name!r} exists with directions {have}, the config asks {want} "
                           "(use another sweep.study_name or restore the objectives)"])
    objectives = study.user_attrs.get(R.OBJECTIVES)
    if objectives is None:
        study.set_user_attr(R.OBJECTIVES, list(sweep_cfg.objectives))
        study.set_metric_names(list(sweep_cfg.objectives))  # optuna-dashboard labels the axes with these
    elif list(objectives) != list(sweep_cfg.objectives):
        raise ConfigError([f"sweep.objectives: study {study_name!r} optimises {objectives}, the config asks {sweep_cfg.objectives} "
                           "(use another sweep.study_name)"])
    return study


class Counts(dict):
    """One read of the study: trials per state (a dict: counts["RUNNING"], counts["finished"]; a config ruled out
    before training is counted under counts[INFEASIBLE], not under PRUNED nor finished) and what a dispatch
    looks up, indexed rather than scanned: finished + running trials per value of a user attribute when asked for
    (`filled`, e.g. per question arm), the first trial that completed each config hash by training (`completed`),
    and the running trials of each config hash (`running`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.filled: dict[Any, int] = {}
        self.completed: dict[str, Any] = {}  # config hash -> FrozenTrial
        self.running: dict[str, list[int]] = {}  # config hash -> trial numbers
        # configs ruled out before training, per value of the group attribute (None without one): distinct config
        # hashes (a grid never proposes one twice: its points left shrink) and trials (proposals ruled out)
        self.ruled_out: dict[Any, int] = {}
        self.ruled_out_trials: dict[Any, int] = {}

    @property
    def ruled_out_points(self) -> int:
        """Distinct configs ruled out in the whole study."""
        return sum(self.ruled_out.values())


_FINAL = ("COMPLETE", "PRUNED", "FAIL")


class _Tally:
    """The finished trials' share of `Counts`, added once per trial (see SweepStudy.counts)."""

    def __init__(self, group_attr: str | None):
        self.group_attr = group_attr
        self.states = dict.fromkeys((*STATES, INFEASIBLE), 0)
        self.filled: dict[Any, int] = {}
        self.completed: dict[str, Any] = {}
        self.ruled_out: dict[Any, set[str]] = {}
        self.ruled_out_trials: dict[Any, int] = {}
        self.done: set[int] = set()  # numbers of the finished trials tallied
        self.first_open = 0  # every trial numbered below this is tallied

    def _add(self, t, c: Counts) -> None:
        """Trial `t` into the tally (finished) or into this read `c` only (not finished)."""
        state, attrs = t.state.name, t.user_attrs
        final = state in _FINAL
        if state == "PRUNED" and R.INFEASIBLE in attrs:  # ruled out before training: never fills n_trials nor an arm
            state = INFEASIBLE
        states, filled = (self.states, self.filled) if final else (c, c.filled)
        if state in states:
            states[state] += 1
        if self.group_attr is not None and state in ("COMPLETE", "PRUNED", "RUNNING"):
            key = attrs.get(self.group_attr)
            if key is not None:
                filled[key] = filled.get(key, 0) + 1
        h = attrs.get(R.CONFIG_HASH)
        if state == INFEASIBLE:  # (always final)
            key = attrs.get(self.group_attr) if self.group_attr is not None else None
            self.ruled_out.setdefault(key, set()).add(h or f"#{t.number}")
            self.ruled_out_trials[key] = self.ruled_out_trials.get(key, 0) + 1
        if h is not None:
            if state == "COMPLETE" and R.REUSED_FROM not in attrs:
                prior = self.completed.get(h)
                if prior is None or t.number < prior.number:  # the first trial that completed it
                    self.completed[h] = t
            elif state == "RUNNING":
                c.running.setdefault(h, []).append(t.number)
        if final:
            self.done.add(t.number)

    def counts(self, trials: list) -> Counts:
        c = Counts.fromkeys((*STATES, INFEASIBLE), 0)
        for t in trials[self.first_open:]:
            if t.number not in self.done:
                self._add(t, c)
        while self.first_open < len(trials) and trials[self.first_open].number in self.done:
            self.first_open += 1
        for k, v in self.states.items():
            c[k] += v
        for k, v in self.filled.items():
            c.filled[k] = c.filled.get(k, 0) + v
        c.completed = dict(self.completed)
        c.ruled_out = {k: len(v) for k, v in self.ruled_out.items()}
        c.ruled_out_trials = dict(self.ruled_out_trials)
        return c


class SweepStudy:
    """One study in its storage, with the operations the coordinator needs by trial number."""

    def __init__(self, sweep_cfg, study_name: str, url: str, on_stale: Callable | None = None, *, storage=None,
                 sampler=None, pruner=None):
        self.name = study_name
        self.url = url
        self.storage = storage or make_storage(url, heartbeat_interval=sweep_cfg.heartbeat_interval_s,
                                               grace_period=sweep_cfg.grace_period_s, failed_trial_callback=on_stale,
                                               timeout_s=sweep_cfg.storage_timeout_s)
        check_optuna_storage(self.storage)  # the storage-level calls below Study: loud when an Optuna lacks them
        self.study = open_study(sweep_cfg, study_name, self.storage, sampler=sampler, pruner=pruner)
        self.study_id = self.storage.get_study_id_from_name(study_name)
        self._ids: dict[int, int] = {}
        self._tallies: dict[str | None, _Tally] = {}

    def trial_id(self, number: int) -> int:
        if number not in self._ids:
            self._ids[number] = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)
        return self._ids[number]

    def counts(self, group_attr: str | None = None) -> Counts:
        """Trials per state in the shared storage (every machine's), plus `finished` = COMPLETE + PRUNED, and the
        config-hash indexes (see Counts); with `group_attr`, also how many trials are finished or running per value
        of that user attribute (`.filled`).

        One get_trials through the study's cached storage (finished trials come from memory; Optuna's get_n_trials
        would load every trial once per state), and incremental: a finished trial never changes state, nor the
        attributes counted here (all written before it is told), so its share is added once to a running tally
        (`_Tally`) and only the trials not finished when last read are looked at again. The cost per read is then
        the storage's, not a walk over every trial's attributes: a study of 10,000 trials is read as fast as one
        of 100 (benchmarks/scale.py)."""
        tally = self._tallies.get(group_attr)
        if tally is None:
            tally = self._tallies[group_attr] = _Tally(group_attr)
        trials = self.study.get_trials(deepcopy=False)  # in trial-number order, numbers 0..n-1
        c = tally.counts(trials)
        c["finished"] = c["COMPLETE"] + c["PRUNED"]
        return c

    def create_running(self, params: dict[str, Any], distributions: dict, *, owner: str, arm: str, arm_trial: int):
        """A new RUNNING trial with its parameters, owner and arm link, written in one transaction (ask, suggest
        and set_user_attr would take one each): for parameters already chosen, by a question arm's sampler."""
        import optuna

        template = optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING, params=params,
                                             distributions=distributions,
                                             user_attrs={**R.in_arm(arm, arm_trial), **R.claimed(owner)})
        trial_id = self.storage.create_new_trial(self.study_id, template_trial=template)
        trial = optuna.trial.Trial(self.study, trial_id)
        self._ids[trial.number] = trial_id
        return trial

    def trials(self, *states: str) -> list:
        import optuna

        wanted = tuple(optuna.trial.TrialState[s] for s in states) or None
        return self.study.get_trials(deepcopy=False, states=wanted)

    def trial(self, number: int):
        return self.storage.get_trial(self.trial_id(number))

    def record(self, number: int) -> R.TrialRecord:
        """What lorasweep stored on trial `number`, typed."""
        return R.TrialRecord.of(self.trial(number))

    def records(self, *states: str) -> list[R.TrialRecord]:
        return [R.TrialRecord.of(t) for t in self.trials(*states)]

    def set_attrs(self, number: int, attrs: dict[str, Any]) -> None:
        """Write user attributes built by records.py's writers (the typed setters below say which)."""
        for k, v in attrs.items():
            self.storage.set_trial_user_attr(self.trial_id(number), k, v)

    # ---------------------------------------------------------------- typed writers (names: records.py)
    def claim(self, number: int, owner: str) -> None:
        self.set_attrs(number, R.claimed(owner))

    def set_config_hash(self, number: int, config_hash: str) -> None:
        self.set_attrs(number, R.hashed(config_hash))

    def set_arm(self, number: int, arm: str, arm_trial: int) -> None:
        self.set_attrs(number, R.in_arm(arm, arm_trial))

    def set_main_trial(self, number: int, main_trial: int) -> None:
        """(an arm study) the main study's trial that arm trial `number` mirrors."""
        self.set_attrs(number, R.mirrors(main_trial))

    def set_run_id(self, number: int, run_id: str) -> None:
        self.set_attrs(number, R.run_opened(run_id))

    def set_failure(self, number: int, reason: str) -> None:
        self.set_attrs(number, R.failed(reason))

    def set_outcome(self, number: int, metrics: dict, run: R.RunInfo | None, failure_reason: str | None = None) -> None:
        self.set_attrs(number, R.outcome(metrics, run, failure_reason))

    def set_infeasible(self, number: int, verdict: dict) -> None:
        """Ruled out before training (sweep.plan.budget.Verdict.stored()); told PRUNED by the caller."""
        self.set_attrs(number, R.ruled_out(verdict))

    def set_reused(self, number: int, prior: int, metrics: dict, run_id: str | None) -> None:
        self.set_attrs(number, R.reused(prior, metrics, run_id))

    def enqueue_retry(self, params: dict[str, Any], count: int, of: int, alone: bool = False) -> None:
        """Trial `of` again with its parameters (a retry); `alone`: with its GPU to itself."""
        self.study.enqueue_trial(params, user_attrs=R.retry(count, of, alone), skip_if_exists=False)

    def set_experiment(self, name: str) -> None:
        self.study.set_user_attr(R.EXPERIMENT, name)

    def baseline(self, key: str) -> dict | None:
        return self.study.user_attrs.get(R.baseline_attr(key))

    def set_baseline(self, key: str, record: dict) -> None:
        self.study.set_user_attr(R.baseline_attr(key), record)

    def fail(self, number: int, reason: str) -> None:
        """Fail a RUNNING trial (any coordinator's) with its reason."""
        import optuna

        self.set_failure(number, reason)
        self.study.tell(number, state=optuna.trial.TrialState.FAIL)

    def heartbeat(self, numbers: list[int]) -> None:
        for n in numbers:
            self.storage.record_heartbeat(self.trial_id(n))

    def fail_stale(self) -> None:
        import optuna

        optuna.storages.fail_stale_trials(self.study)


def check_storage(url: str, timeout_s: float = 60.0) -> None:
    """Before anything is written: the storage URL is an RDB URL, an existing sqlite file is a readable database
    (not locked past the timeout, not corrupt), a new one can be created, a server answers. One-line ConfigError."""
    _check_url(url)
    path = Path(url[len("sqlite:///"):]) if url.startswith("sqlite:///") else None
    if path is not None:
        from sweep.tracking.mlflow_tracker import check_sqlite_file

        problem = check_sqlite_file(path, timeout_s)
        if problem:
            raise ConfigError([f"sweep.storage: {problem} (locked: wait for the process holding it or raise "
                               "sweep.storage_timeout_s; corrupt: move the file away to start a new study)"])
        return
    try:
        import sqlalchemy

        engine = sqlalchemy.create_engine(url, pool_pre_ping=True)
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # unreachable server, bad credentials, missing driver
        raise ConfigError([f"sweep.storage: cannot reach {url!r}: {one_line(exc, 200)} (start the database server, fix the "
                           "URL, or install its driver: pip install -e '.[postgres]')"]) from None
