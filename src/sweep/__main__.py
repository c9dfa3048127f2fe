"""`python -m sweep [--config-dir DIR] +experiment=<name> [overrides]`: compose, run (or resume) the study,
print the summary."""

from __future__ import annotations

import sys

HELP = """usage: python -m sweep [--config-dir DIR] [+experiment=NAME] [group=option ...] [key=value ...] [--cfg]

Runs (or resumes) an Optuna study of LoRA trials composed by Hydra from the shipped config groups.
  +experiment=NAME   an experiment: qv_vs_all, rank_sweep, layerwise_ranks, qlora_vs_lora, smoke (or one of yours)
  group=option       swap a config group: model=, data=, lora=, quant=, train=, sweep=, tracking=, cost=
  key=value          override a value, e.g. sweep.n_trials=20 sweep.workers=2 train.max_steps=300
  --config-dir DIR   add your own groups and experiments (DIR/experiment/x.yaml, DIR/model/y.yaml, ...) beside
                     the shipped ones; select them by name (+experiment=x model=y)
  --cfg              print the composed config and exit
Study state: sweeps/<study>/ (sqlite) or sweep.storage=<any Optuna storage URL>. A study name (sweep.study_name,
else the experiment's name) is letters, digits and . _ - only; the MLflow experiment may be named apart, / allowed
(sweep.experiment_name=team/intent).
Runs: MLflow at tracking.tracking_uri (default sqlite:///.mlflow/mlflow.db); `make ui` opens it.
Report: python -m sweep.report <study>.   One trial: python -m sweep.trial [overrides].
Exit codes: 0 done, 1 no trial completed, 2 bad input, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(HELP)
        return 0
    from sweep.quiet import quiet_libraries

    quiet_libraries()
    from sweep.config.compose import compose, split_config_dirs
    from sweep.config.errors import ConfigError
    from sweep.orchestration.pool import WorkerStartupError

    show = "--cfg" in argv
    try:
        dirs, overrides = split_config_dirs([a for a in argv if a != "--cfg"])
        run = compose(overrides, dirs)
        if show:
            import yaml

            print(yaml.safe_dump(run.raw, sort_keys=False))
            return 0
        from sweep.orchestration.preflight import preflight

        warnings = preflight(run)
        for line in warnings:
            print(f"warning: {line}", file=sys.stderr)
        from sweep.orchestration.coordinator import Coordinator
        from sweep.orchestration.summary import print_summary

        coordinator = Coordinator(run)
        summary = coordinator.run()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except WorkerStartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print_summary(summary, run, warnings)
    if summary.interrupted:
        return 143 if coordinator.terminated else 130
    return 0 if summary.n_complete + summary.n_pruned > 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
