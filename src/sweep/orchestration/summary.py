"""The outcome of one `python -m sweep` run and the summary printed at its end."""

from __future__ import annotations

from dataclasses import dataclass, field

from sweep.config.compose import RunConfig
from sweep.orchestration.records import TrialRecord

BEST_SHOWN = 5


@dataclass
class SweepSummary:
    study_name: str
    storage: str
    n_complete: int
    n_pruned: int
    n_failed: int
    wall_s: float
    trial_compute_s: float
    best: list[dict] = field(default_factory=list)
    interrupted: bool = False
    startup_s: float = 0.0  # until the first worker had imported torch/peft and said ready
    trials_run: int = 0  # trials trained by this run (reused and untrained failures excluded)
    n_infeasible: int = 0  # configs ruled out before training by the budgets (not among the pruned)


def best_trials(study) -> list[dict]:
    """The study's best trials (Pareto-optimal for several objectives), one per config hash."""
    out: list[dict] = []
    seen: set = set()
    try:
        best = study.best_trials
    except (ValueError, RuntimeError):  # no completed trial yet
        return out
    for t in best:
        h = TrialRecord.of(t).config_hash
        if h not in seen:  # reused copies of one config
            seen.add(h)
            out.append({"number": t.number, "values": t.values, "hash": h, "params": t.params})
    return out[:BEST_SHOWN]


def print_summary(s: SweepSummary, run: RunConfig, warnings: list[str] | tuple[str, ...] = ()) -> None:
    """The end of `python -m sweep`: counts, times, best trials, where everything is, and preflight's warnings again
    (they were printed before the first trial, long scrolled away by now)."""
    share = s.trial_compute_s / s.wall_s if s.wall_s else 0.0
    ruled_out = (f", {s.n_infeasible} ruled out before training (over sweep.memory_budget_mb or "
                 "sweep.max_trainable_params; the report lists them)") if s.n_infeasible else ""
    print(f"\nstudy {s.study_name}: {s.n_complete} complete, {s.n_pruned} pruned, {s.n_failed} failed{ruled_out}"
          + (" (interrupted; rerun the same command to resume)" if s.interrupted else ""))
    print(f"this run: wall {s.wall_s:.1f}s, summed trial time {s.trial_compute_s:.1f}s ({share:.0%} of wall)")
    if s.best:
        names = run.sweep.objectives
        print("best trial(s):")
        for b in s.best:
            vals = ", ".join(f"{n}={v:.4g}" for n, v in zip(names, b["values"]))
            params = ", ".join(f"{k}={v}" for k, v in b["params"].items())
            print(f"  #{b['number']} [{b['hash']}] {vals}  ({params})")
    print(f"study storage: {s.storage}")
    if run.tracking.backend == "mlflow":
        print(f"MLflow: {run.tracking.tracking_uri} (experiment {run.experiment_name}); browse with `make ui`")
    print(f"report: python -m sweep.report {s.study_name}")
    for line in warnings:
        print(f"warning: {line}")
