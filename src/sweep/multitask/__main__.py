"""`python -m sweep.multitask STUDY STUDY [...]`: serve the studies' adapters on one base, measure, price, report.

Prints the report files and the MLflow run; errors are one line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import sys


def _pairs(items: list[str], flag: str, value_name: str) -> dict[str, str]:
    from sweep.multitask import MultitaskError

    out = {}
    for item in items:
        study, sep, value = item.partition("=")
        if not sep or not study or not value:
            raise MultitaskError(f"{flag} {item!r}: expected STUDY={value_name}, e.g. {flag} intent={'3fa9c0' if flag == '--hash' else '2'}")
        out[study] = value
    return out


def _weight(study: str, text: str) -> float:
    from sweep.multitask import MultitaskError

    try:
        return float(text)
    except ValueError:
        raise MultitaskError(f"--share {study}={text}: the weight must be a number, e.g. --share {study}=2") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from sweep.report.load import DEFAULT_TRACKING_URI

    ap = argparse.ArgumentParser(prog="python -m sweep.multitask",
                                 description="Serve several studies' adapters side by side on one base model: exact "
                                             "accuracy, memory, switching, latency and mixed batches against K merged "
                                             "models, priced; logged to MLflow and written as a report section.")
    ap.add_argument("studies", nargs="+", help="study names (sweep.study_name), one adapter each, all on the same base model")
    ap.add_argument("--hash", action="append", default=[], metavar="STUDY=PREFIX",
                    help="serve this config hash (prefix) of STUDY instead of its report's recommendation")
    ap.add_argument("--tracking-uri", default=DEFAULT_TRACKING_URI, help=f"MLflow tracking URI (default {DEFAULT_TRACKING_URI})")
    ap.add_argument("--artifact-location", default=".mlflow/artifacts", help="artifact root if the `multitask` experiment is new")
    ap.add_argument("--sweeps-dir", default="sweeps", help="trial folders, the fallback for adapter files (default sweeps)")
    ap.add_argument("--out", default="reports", help="report root: OUT/multitask-<studies>/ (default reports)")
    ap.add_argument("--cost", default=None, metavar="NAME", help="a cost option (conf/cost/NAME.yaml, e.g. a100_cloud; default: the first study's own)")
    ap.add_argument("--cost-override", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                    help="override a cost key, e.g. --cost-override monthly_requests=1e7")
    ap.add_argument("--share", action="append", default=[], metavar="STUDY=WEIGHT",
                    help="request weight of a study (others 1; default: requests split evenly)")
    ap.add_argument("--device-memory-mb", type=float, default=None, help="memory of one serving device, MiB (default: this machine's RAM)")
    ap.add_argument("--latency-iters", type=int, default=30, help="timed forwards per latency cell (default 30)")
    ap.add_argument("--switch-iters", type=int, default=200, help="timed set_adapter calls (default 200)")
    ap.add_argument("--mixed-rows", type=int, default=None, help="requests in the mixed batch (default: the eval batch)")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    ap.add_argument("--no-memory", action="store_true", help="skip the fresh-process memory measurement")
    return ap.parse_args(argv)


def serving_cost(study: str, tracking_uri: str, name: str | None, overrides: list[str]):
    """The cost inputs: the first study's own (as its sweep composed them), then `cost=NAME` and `cost.KEY=VALUE`."""
    from sweep.report.__main__ import report_cost
    from sweep.report.load import load_study

    return report_cost(load_study(study, tracking_uri), ([f"cost={name}"] if name else []) + [f"cost.{kv}" for kv in overrides], [])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from sweep.quiet import quiet_libraries

    quiet_libraries()
    from sweep.config.errors import ConfigError
    from sweep.multitask import MultitaskError
    from sweep.multitask.run import ServeSettings, serve
    from sweep.report.load import ReportError

    from sweep.names import check_existing_or_path_name
    from sweep.report.load import study_exists

    try:
        for study in args.studies:  # each names a folder part and a temporary folder; an existing one is read as named
            check_existing_or_path_name("study", study, lambda s=study: study_exists(s, args.tracking_uri),
                                        example=f"python -m sweep.multitask ... {{}} ...")
        hashes = _pairs(args.hash, "--hash", "PREFIX")
        shares = {k: _weight(k, v) for k, v in _pairs(args.share, "--share", "WEIGHT").items()}
        settings = ServeSettings(switch_iters=args.switch_iters, latency_iters=args.latency_iters,
                                 mixed_rows=args.mixed_rows, device_memory_mb=args.device_memory_mb, shares=shares,
                                 measure_memory=not args.no_memory, device=args.device)
        cost = serving_cost(args.studies[0], args.tracking_uri, args.cost, args.cost_override)
        result, files = serve(args.studies, hashes=hashes, tracking_uri=args.tracking_uri, sweeps_dir=args.sweeps_dir,
                              out_root=args.out, cost=cost, settings=settings, artifact_location=args.artifact_location,
                              log=lambda m: print(m, flush=True))
    except (ConfigError, MultitaskError, ReportError) as exc:
        text = "; ".join(exc.problems) if isinstance(exc, ConfigError) else str(exc)
        print(f"error: {' '.join(text.split())}", file=sys.stderr)
        return 2
    print(result.recommendation)
    for path in files:
        print(path)
    print(f"MLflow run {result.run_id} (experiment multitask)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
