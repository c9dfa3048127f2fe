"""`python -m sweep.report <study>`: write reports/<study>/{report.md, report.html, trials.csv, *.png} and print the paths."""

from __future__ import annotations

import argparse
import sys


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from sweep.report.load import DEFAULT_TRACKING_URI

    ap = argparse.ArgumentParser(prog="python -m sweep.report",
                                 description="Comparison tables, Pareto frontiers and cost/ROI of a study, read from MLflow.")
    ap.add_argument("study", help="study name (= the MLflow experiment name)")
    ap.add_argument("--tracking-uri", default=DEFAULT_TRACKING_URI, help=f"MLflow tracking URI (default {DEFAULT_TRACKING_URI})")
    ap.add_argument("--out", default="reports", help="output root; the report goes to OUT/<study>/ (default reports)")
    ap.add_argument("--cost", default=None, help="cost YAML (default conf/cost/cpu_local.yaml), e.g. conf/cost/a100_cloud.yaml")
    ap.add_argument("--cost-override", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                    help="override a cost key, e.g. --cost-override price_per_device_hour=2.5 monthly_requests=1e7")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from sweep.quiet import quiet_libraries

    quiet_libraries()
    from sweep.config.errors import ConfigError
    from sweep.report.cost import load_cost_config
    from sweep.report.load import ReportError
    from sweep.report.render import build_report

    try:
        cost = load_cost_config(args.cost, args.cost_override)
        files = build_report(args.study, cost, args.tracking_uri, args.out)
    except (ConfigError, ReportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in files.paths():
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
