"""The experiment's question arms: equal budgets, and a sampler and a pruner of their own for each arm.

The arms are the values of the `sweep.group_by` keys that are categorical (or config-group)
parameters of the search space: `group_by: [lora.targets]` with choices qv, all_linear makes
two arms. Each arm gets an equal share of `n_trials` and an Optuna study of its own (named
`<study>[lora.targets=qv]`) whose sampler models only that arm's trials, so a weak arm is
tuned as hard as a strong one, and whose pruner compares a trial only with its own arm's
(an arm that learns later is not cut by a faster one's median).

The study's main Optuna study stays the record of every trial (numbers, states, results,
MLflow, trial folders): an arm's sampler proposes the parameters, the main study's trial is
written with them, and the arm trial mirrors the main trial's outcome (`sync`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from sweep.orchestration import space as sp
from sweep.orchestration.records import TrialRecord
from sweep.orchestration.study import SweepStudy, make_pruner, make_sampler


ARM_GIVE_UP = 20  # proposals of one arm ruled out by the budgets before the arm is closed at what it has


def arm_keys(sweep_cfg) -> list[str]:
    """The group_by keys that are categorical or group parameters of the space: they define the arms."""
    return [k for k in sweep_cfg.group_by if k in sweep_cfg.space and sweep_cfg.space[k].type in ("categorical", "group")]


def arm_label(values: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in values.items())


def plan(sweep_cfg) -> list[tuple[dict[str, Any], int]]:
    """(values, budget) of each arm: every combination of the arm keys' choices, n_trials split equally."""
    keys = arm_keys(sweep_cfg)
    if not keys:
        return []
    combos = list(itertools.product(*[sweep_cfg.space[k].choices for k in keys]))
    n = sweep_cfg.n_trials
    return [(dict(zip(keys, c)), n // len(combos) + (1 if i < n % len(combos) else 0)) for i, c in enumerate(combos)]


def describe(sweep_cfg) -> list[dict]:
    """The arms and their budgets, as recorded for the report."""
    return [{"arm": arm_label(values), "budget": budget} for values, budget in plan(sweep_cfg)]


@dataclass
class Arm:
    index: int
    values: dict[str, Any]  # the arm's fixed parameters, e.g. {"lora.targets": "qv"}
    budget: int  # trials (finished) this arm gets
    study: SweepStudy  # the arm's own study: its sampler's and its pruner's memory

    @property
    def label(self) -> str:
        return arm_label(self.values)


class Arms:
    def __init__(self, sweep_cfg, main: SweepStudy):
        self.cfg = sweep_cfg
        self.keys = arm_keys(sweep_cfg)
        self.rest = {k: s for k, s in sweep_cfg.space.items() if k not in self.keys}  # what each arm's sampler tunes
        self.arms = []
        for i, (values, budget) in enumerate(plan(sweep_cfg)):
            study = SweepStudy(sweep_cfg, f"{main.name}[{arm_label(values)}]", main.url, storage=main.storage,
                               sampler=make_sampler(sweep_cfg, self.rest, seed_offset=i), pruner=make_pruner(sweep_cfg))
            self.arms.append(Arm(i, values, budget, study))
        self.by_label = {a.label: a for a in self.arms}

    def choose(self, filled: dict[str, int], capacity: dict[str, int] | None = None) -> Arm | None:
        """The arm furthest below its budget, or None when every arm is full. `filled`: the main study's finished +
        running trials per arm label (`SweepStudy.counts(records.ARM).filled`, read once for the whole dispatch);
        `capacity`: what each arm can still reach (`capacities`), its budget by default."""
        capacity = capacity or {}
        open_arms = [(filled.get(a.label, 0), a.index, a) for a in self.arms]
        open_arms = [x for x in open_arms if x[0] < capacity.get(x[2].label, x[2].budget)]
        return min(open_arms, key=lambda x: (x[0] / x[2].budget, x[1]))[2] if open_arms else None

    def capacities(self, counts) -> dict[str, int]:
        """The finished trials each arm can reach (its budget) once configs ruled out before training are set aside
        (`counts`: SweepStudy.counts(records.ARM)): with the grid sampler, no more than the arm's grid points not
        ruled out; with another sampler, an arm that had ARM_GIVE_UP proposals ruled out (at least 5 per trial of
        its budget, 100 at most) is closed at the trials it has: its region of the space does not fit the budgets."""
        out = {}
        for a in self.arms:
            ruled, tries = counts.ruled_out.get(a.label, 0), counts.ruled_out_trials.get(a.label, 0)
            cap = a.budget
            if ruled and self.cfg.sampler == "grid":
                cap = min(cap, sp.grid_size(self.rest) - ruled)
            elif tries >= min(max(ARM_GIVE_UP, 5 * a.budget), 100):
                cap = min(cap, counts.filled.get(a.label, 0))
            out[a.label] = cap
        return out

    def of(self, params: dict[str, Any]) -> Arm:
        return self.by_label[arm_label({k: params[k] for k in self.keys})]

    def propose(self, arm: Arm, base: dict) -> tuple[Any, dict[str, Any]]:
        """Ask the arm's sampler: (its trial, the full parameters including the arm's own values)."""
        trial = arm.study.study.ask()
        params = sp.suggest(trial, self.rest, base, fixed=arm.values)
        return trial, {**arm.values, **params}

    def follow(self, arm: Arm, params: dict[str, Any], base: dict):
        """An arm trial for parameters chosen elsewhere (a retry): enqueued in the arm's study and asked."""
        rest = {k: v for k, v in params.items() if k not in self.keys}
        arm.study.study.enqueue_trial(sp.encoded(rest), skip_if_exists=False)
        trial = arm.study.study.ask()
        sp.suggest(trial, self.rest, base, fixed=arm.values)
        return trial

    def sync(self, main: SweepStudy, grace_s: float) -> int:
        """Every arm trial still RUNNING whose main trial has ended gets the same outcome; one never linked to a main
        trial (its coordinator died in between) fails after `grace_s`. Returns how many were settled."""
        import datetime

        import optuna

        done = 0
        now = datetime.datetime.now()
        for arm in self.arms:
            for t in arm.study.trials("RUNNING"):
                number = TrialRecord.of(t).main_trial
                if number is None:
                    if t.datetime_start and (now - t.datetime_start).total_seconds() > grace_s:
                        arm.study.study.tell(t.number, state=optuna.trial.TrialState.FAIL)
                        done += 1
                    continue
                m = main.trial(int(number))
                if m.state == optuna.trial.TrialState.COMPLETE:
                    arm.study.study.tell(t.number, m.values)
                elif m.state in (optuna.trial.TrialState.FAIL, optuna.trial.TrialState.PRUNED):
                    arm.study.study.tell(t.number, state=m.state)
                else:
                    continue
                done += 1
        return done
