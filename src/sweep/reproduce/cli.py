"""The command line of `python -m sweep.reproduce <config-hash-prefix> [--tracking-uri URI] [--sweeps-dir sweeps]`.

Exit code: 0 all judged metrics match, 1 some differ, 2 the trial could not be found.
"""

from __future__ import annotations

import argparse
import sys

from sweep.reproduce.compare import format_rows, tolerance_text
from sweep.reproduce.lookup import MIN_PREFIX, ReproduceError
from sweep.reproduce.rerun import reproduce


def main(argv: list[str] | None = None) -> int:
    from sweep.report.load import DEFAULT_TRACKING_URI

    ap = argparse.ArgumentParser(prog="python -m sweep.reproduce",
                                 description="Rerun a trial from its config hash and compare every metric with the original.")
    ap.add_argument("prefix", help=f"config hash or a unique prefix of it (at least {MIN_PREFIX} hex characters)")
    ap.add_argument("--tracking-uri", default=DEFAULT_TRACKING_URI, help=f"MLflow tracking URI (default {DEFAULT_TRACKING_URI})")
    ap.add_argument("--sweeps-dir", default="sweeps", help="folder with <study>/trials/ (default sweeps)")
    args = ap.parse_args(argv)
    from sweep.gpus import pin_one_gpu
    from sweep.quiet import quiet_libraries

    pinned = pin_one_gpu()  # one trial, one GPU: with several visible the Trainer would wrap it in DataParallel
    if pinned:
        print(f"note: several GPUs visible; the rerun uses one, CUDA_VISIBLE_DEVICES={pinned}", file=sys.stderr)
    quiet_libraries()
    try:
        outcome = reproduce(args.prefix, tracking_uri=args.tracking_uri, sweeps_dir=args.sweeps_dir)
    except ReproduceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"original device: {outcome.original.device or '?'}; rerun device: {outcome.rerun_device or '?'}; "
          f"{tolerance_text(outcome.gpu)}; timing/memory shown as rerun/original ratios, not judged")
    if outcome.original.device and outcome.rerun_device and \
            outcome.original.device.split(":")[0] != outcome.rerun_device.split(":")[0]:
        print(f"note: the original ran on {outcome.original.device}, the rerun on {outcome.rerun_device}: results may "
              "legitimately differ across device kinds; rerun on the original kind for a strict check")
    print(format_rows(outcome.rows))
    judged = [r for r in outcome.rows if r.judged]
    bad = [r.metric for r in judged if not r.ok]
    if bad:
        print(f"NOT REPRODUCED: {len(bad)} of {len(judged)} judged values differ ({', '.join(bad)}); rerun outputs in {outcome.output_dir}")
        return 1
    print(f"reproduced: all {len(judged)} judged values match; rerun outputs in {outcome.output_dir}")
    return 0

