"""`python -m sweep +experiment=<name> [overrides]`: compose, run (or resume) the study, print the summary."""

from __future__ import annotations

import sys

HELP = """usage: python -m sweep [+experiment=NAME] [group=option ...] [key=value ...] [--cfg]

Runs (or resumes) an Optuna study of LoRA trials composed by Hydra from conf/.
  +experiment=NAME   conf/experiment/NAME.yaml: qv_vs_all, rank_sweep, layerwise_ranks, qlora_vs_lora
  group=option       swap a config group: model=, data=, lora=, quant=, train=, sweep=, tracking=, cost=
  key=value          override a value, e.g. sweep.n_trials=20 sweep.workers=2 train.max_steps=300
  --cfg              print the composed config and exit
Study state: sweeps/<study>/ (sqlite) or sweep.storage=<any Optuna storage URL>.
Runs: MLflow at tracking.tracking_uri (default sqlite:///.mlflow/mlflow.db); `make ui` opens it.
Report: python -m sweep.report <study>.   One trial: python -m sweep.trial [overrides].
"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(HELP)
        return 0
    from sweep.quiet import quiet_libraries

    quiet_libraries()
    from sweep.config.compose import compose
    from sweep.config.errors import ConfigError

    show = "--cfg" in argv
    overrides = [a for a in argv if a != "--cfg"]
    try:
        run = compose(overrides)
        if show:
            import yaml

            print(yaml.safe_dump(run.raw, sort_keys=False))
            return 0
        from sweep.orchestration.preflight import preflight

        preflight(run)
        from sweep.orchestration.coordinator import Coordinator
        from sweep.orchestration.summary import print_summary

        summary = Coordinator(run).run()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_summary(summary, run)
    return 130 if summary.interrupted else 0


if __name__ == "__main__":
    raise SystemExit(main())
