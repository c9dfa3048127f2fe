"""`python -m sweep.report <study> [cost overrides]`: write reports/<study>/{report.md, report.html, trials.csv, *.png}
and print the paths.

The prices come from the `cost` group composed by Hydra as the sweep composed it (the
overrides it ran with are recorded on the study's MLflow parent run), with the
command line's overrides on top: `cost=a100_cloud`, `cost.price_per_device_hour=2.5`.
"""

from __future__ import annotations

import argparse
import json
import sys

NAME_KEYS = ("sweep.study_name", "sweep.experiment_name", "name")
EPILOG = ("examples: python -m sweep.report qv_vs_all cost=a100_cloud; "
          "python -m sweep.report qv_vs_all cost.price_per_device_hour=2.5 cost.monthly_requests=1e7")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from sweep.report.load import DEFAULT_TRACKING_URI

    ap = argparse.ArgumentParser(prog="python -m sweep.report", epilog=EPILOG,
                                 description="Comparison tables, Pareto frontiers and cost/ROI of a study, read from MLflow.")
    ap.add_argument("study", help="study name, or its MLflow experiment name (sweep.experiment_name)")
    ap.add_argument("overrides", nargs="*", metavar="OVERRIDE", help="Hydra overrides of the cost group (cost=NAME, cost.KEY=VALUE)")
    ap.add_argument("--tracking-uri", default=DEFAULT_TRACKING_URI, help=f"MLflow tracking URI (default {DEFAULT_TRACKING_URI})")
    ap.add_argument("--out", default="reports", help="output root; the report goes to OUT/<study>/ (default reports)")
    ap.add_argument("--config-dir", action="append", default=[], metavar="DIR",
                    help="your config folder (as given to python -m sweep), if the sweep used one")
    return ap.parse_args(argv)


def report_cost(study, overrides: list[str], config_dirs: list[str], warn=lambda text: print(text, file=sys.stderr)):
    """The CostConfig for a study's report: the sweep's composition plus `overrides` (cost keys only)."""
    from sweep.config.compose import compose, override_key
    from sweep.config.errors import ConfigError
    from sweep.tracking import tags as T

    bad = [ov for ov in overrides if not override_key(ov).split(".")[0] == "cost"]
    if bad:
        raise ConfigError([f"override {bad[0]!r}: a report only takes cost overrides (cost=NAME or cost.KEY=VALUE)"])
    # the command line's cost choice replaces the sweep's own cost overrides as a whole
    # names never change a price, and one an older version accepted (team/x) no longer composes: left out
    recorded = [ov for ov in json.loads(study.parent_tags.get(T.OVERRIDES, "[]"))
                if not (overrides and override_key(ov).split(".")[0] == "cost") and override_key(ov) not in NAME_KEYS]
    dirs = config_dirs or json.loads(study.parent_tags.get(T.CONFIG_DIRS, "[]"))
    try:
        return compose([*recorded, *overrides], dirs).cost
    except ConfigError as exc:
        if not recorded and not dirs:
            raise
        warn(f"warning: the sweep's own config no longer composes ({exc.problems[0]}); using the shipped defaults")
        return compose(overrides, config_dirs).cost


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from sweep.quiet import quiet_libraries

    quiet_libraries()
    from sweep.config.errors import ConfigError
    from sweep.report.load import ReportError, load_study
    from sweep.report.render import write_report

    from sweep.names import check_path_name, folder_for

    try:
        try:
            study = load_study(args.study, args.tracking_uri)
        except ReportError:
            # not a study: a name that could not be one is the first problem
            check_path_name("study", args.study, example="python -m sweep.report {}")
            raise
        files = write_report(study, report_cost(study, args.overrides, args.config_dir), args.out)
    except (ConfigError, ReportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if folder_for(study.name) != study.name:  # named before the rule (sweep/names.py): readable, written safely
        print(f"note: study {study.name!r} is not a safe folder name; its report is in {files.folder}", file=sys.stderr)
    for path in files.paths():
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
