"""How much do the measured metrics move when nothing changes? The same trial, run again and again.

Runs one trial config (default: the qv_vs_all base config on the packaged MiniLM, shortened) `--repeats` times
in this process, back to back, and prints, per metric: the median, the smallest and largest value, the spread
(max - min) / max, and the tolerance `src/sweep/metrics.py` declares for it (TIMING_NOISE, MEMORY_NOISE). A
declared tolerance below the measured spread means the report could call noise a difference; deterministic
metrics (accuracy, loss, parameter counts) must not move at all on CPU.

    python benchmarks/metric_noise.py [--repeats 5] [override ...]     e.g. model=tiny_bert train.max_steps=20
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import tempfile

DEFAULT = ["+experiment=qv_vs_all", "train.max_steps=40", "data.eval_size=256", "tracking=none"]
SHOWN = ("eval_accuracy", "eval_loss", "trainable_params", "train_time_s", "train_samples_per_s", "eval_time_s",
         "peak_memory_mb", "peak_reserved_mb", "latency_p50_ms", "merged_latency_p50_ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5, help="runs of the same config (default 5)")
    ap.add_argument("overrides", nargs="*", help="config overrides on top of the default trial")
    args = ap.parse_args()
    from sweep.quiet import quiet_libraries

    quiet_libraries()
    from sweep import metrics as mt
    from sweep.config.compose import compose
    from sweep.trial import run_trial

    cfg = compose([*DEFAULT, *args.overrides]).trial
    load0 = os.getloadavg()[0]
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="lorasweep-noise-") as tmp:
        run_trial(cfg, output_dir=os.path.join(tmp, "warm"))  # imports, caches and the allocator's first growth
        for i in range(args.repeats):
            result = run_trial(cfg, output_dir=os.path.join(tmp, str(i)))
            if result.status.value != "COMPLETE":
                print(f"run {i}: {result.status.value}: {result.error}", file=sys.stderr)
                return 1
            runs.append(dict(result.metrics))
            print(f"run {i + 1}/{args.repeats} done", file=sys.stderr, flush=True)

    print(f"\n{datetime.date.today()}, {os.cpu_count()} cores, load average {load0:.2f} at start, "
          f"{os.getloadavg()[0]:.2f} at end; {args.repeats} runs of {' '.join([*DEFAULT, *args.overrides])}")
    head = f"{'metric':<24}{'median':>12}{'min':>12}{'max':>12}{'spread':>9}{'declared':>10}  verdict"
    print(head)
    print("-" * len(head))
    worst_ok = True
    for name in SHOWN:
        values = [r[name] for r in runs if name in r and r[name] == r[name]]
        if not values:
            continue
        m = mt.get(name)
        hi, lo = max(values), min(values)
        spread = (hi - lo) / abs(hi) if hi else 0.0
        if m.noise is mt.Noise.RELATIVE or m.noise is mt.Noise.INTERVAL:
            declared = f"{m.rel_noise:.0%}"
            ok = spread <= m.rel_noise
        elif m.noise is mt.Noise.NONE:
            declared, ok = "-", True
        else:
            declared, ok = "exact", spread == 0.0
        worst_ok &= ok
        print(f"{name:<24}{statistics.median(values):>12.5g}{lo:>12.5g}{hi:>12.5g}{spread:>9.1%}{declared:>10}  "
              f"{'within' if ok else 'EXCEEDS the declared tolerance'}")
    return 0 if worst_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
