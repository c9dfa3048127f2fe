"""The summary printed at the end of a sweep."""

from __future__ import annotations

from sweep.config.compose import RunConfig
from sweep.orchestration.coordinator import SweepSummary


def print_summary(s: SweepSummary, run: RunConfig) -> None:
    share = s.trial_compute_s / s.wall_s if s.wall_s else 0.0
    print(f"\nstudy {s.study_name}: {s.n_complete} complete, {s.n_pruned} pruned, {s.n_failed} failed"
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
        print(f"MLflow: {run.tracking.tracking_uri} (experiment {s.study_name}); browse with `make ui`")
    print(f"report: python -m sweep.report {s.study_name}")
