"""What a sweep costs around its trials: per-trial bookkeeping and start-up, against a plain run_trial loop.

Runs, in one invocation and on the same tiny-model trials (the smoke experiment's model, data and question arms
with a continuous dropout added, so that every trial is a new config; one worker, MLflow on, reuse lookups on):
  plain loop  run_trial(cfg) back to back in this process: no Optuna, no MLflow, no workers
  sweep xN    the real command, `python -m sweep ...`, with N trials, for a short and a long N, each in a fresh
              folder (new Optuna study, new MLflow store)
and prints, per run: wall time, summed trial time (each trial's own duration), overhead = wall - summed trials,
and start-up = from the command to the first trial's start. The per-trial cost of bookkeeping is the slope of
the overhead between the short and the long sweep, with each run's own start-up taken out (it would cancel only
if it were the same in both runs, and it jitters by seconds); goals: <= 0.05 s per trial,
first trial running within 8 s. Also printed: the worker-side share (tracking, messages) of that slope, the same
cost read directly, trial by trial, in the long sweep (from each trial's start to the next one's, less its duration:
free of the run-level jitter that the slope divides by the difference in trials), and the projected share of a
60-s trial.

    python benchmarks/orchestration_overhead.py [--short 4] [--long 16] [--steps 10]
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUDY = "overhead"
# the smoke experiment's tiny BERT, data and question arms, plus a continuous dropout: no two trials share a config,
# so the reuse lookups run on every dispatch as they do by default (sweep.reuse_completed=true) but never hit
EXPERIMENT = f"""# @package _global_
defaults:
  - override /model: tiny_bert
  - override /train: fast
name: {STUDY}
data: {{train_size: 64, eval_size: 32}}
train: {{latency_max_iters: 6, eval_every: 0}}
sweep:
  workers: 1
  sampler: random
  progress: plain
  objectives: [eval_accuracy, trainable_ratio]
  group_by: [lora.targets]
  space:
    lora.targets: {{type: categorical, choices: [qv, all_linear]}}
    lora.r: {{type: categorical, choices: [1, 2, 4]}}
    lora.dropout: {{type: float, low: 0.0, high: 0.3}}
"""
CONF = Path(tempfile.mkdtemp(prefix="lorasweep-bench-conf-"))
atexit.register(shutil.rmtree, CONF, True)
(CONF / "experiment").mkdir()
(CONF / "experiment" / f"{STUDY}.yaml").write_text(EXPERIMENT)
COMMON = [f"+experiment={STUDY}"]


def sweep_run(n: int, steps: int, backend: list[str]) -> dict:
    """One `python -m sweep` with n trials in a fresh folder: wall, summed trial time, start-up."""
    import optuna

    with tempfile.TemporaryDirectory(prefix="lorasweep-bench-") as tmp:
        cmd = [sys.executable, "-m", "sweep", "--config-dir", str(CONF), *COMMON, f"sweep.n_trials={n}",
               f"train.max_steps={steps}", *backend]
        launched = datetime.datetime.now()
        t0 = time.perf_counter()
        out = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=1800)
        wall = time.perf_counter() - t0
        if out.returncode != 0:
            sys.exit(f"sweep failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
        trials = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{Path(tmp) / 'sweeps' / STUDY / 'study.db'}").trials
        runs = [t.user_attrs["run"] for t in trials if "run" in t.user_attrs]
        durations = [r["duration_s"] for r in runs]
        bookkeeping = [r["bookkeeping_s"] for r in runs if r.get("bookkeeping_s") is not None]
        first = min(t.datetime_start for t in trials)
        # one worker runs the trials in order: from one trial's start (its ask) to the next's, less its own duration,
        # is what the sweep spent between them. The first gap also holds the baseline (once per sweep): left out.
        ordered = sorted((t for t in trials if "run" in t.user_attrs), key=lambda t: t.number)
        gaps = [(b.datetime_start - a.datetime_start).total_seconds() - a.user_attrs["run"]["duration_s"]
                for a, b in zip(ordered, ordered[1:])][1:]
        return {"n": len(durations), "wall": wall, "trials": sum(durations), "startup": (first - launched).total_seconds(),
                "mean_trial": statistics.mean(durations), "worker_bookkeeping": statistics.mean(bookkeeping),
                "gaps": gaps}


def plain_loop(n: int, steps: int) -> dict:
    from sweep.config.compose import compose
    from sweep.trial import run_trial

    cfg = compose([*COMMON, f"train.max_steps={steps}", "tracking=none"], config_dirs=[str(CONF)]).trial
    run_trial(cfg)  # imports and caches paid before timing, like a warm worker
    t0 = time.perf_counter()
    durations = [run_trial(cfg).duration_s for _ in range(n)]
    return {"n": n, "wall": time.perf_counter() - t0, "trials": sum(durations), "startup": 0.0,
            "mean_trial": statistics.mean(durations)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--short", type=int, default=4, help="trials of the short sweep")
    ap.add_argument("--long", type=int, default=16, help="trials of the long sweep")
    ap.add_argument("--steps", type=int, default=10, help="training steps per trial (tiny BERT)")
    ap.add_argument("--backend", nargs="*", default=[], help="extra overrides, e.g. sweep.backend=ray sweep.ray.address=local")
    args = ap.parse_args()
    from sweep.quiet import quiet_libraries

    quiet_libraries()
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    rows = [("plain run_trial loop", plain_loop(args.long, args.steps))]
    rows += [(f"sweep x{n}", sweep_run(n, args.steps, args.backend)) for n in (args.short, args.long)]
    short, long_ = rows[1][1], rows[2][1]
    slope = ((long_["wall"] - long_["trials"]) - (short["wall"] - short["trials"])) / (long_["n"] - short["n"])
    # the start-up is measured in each run: taking it out of both overheads removes its run-to-run jitter
    # (seconds, from importing torch in the workers) from a per-trial figure of a few hundredths of a second
    steady = ((long_["wall"] - long_["trials"] - long_["startup"]) - (short["wall"] - short["trials"] - short["startup"])
              ) / (long_["n"] - short["n"])
    print(f"\n{os.cpu_count()} cores; tiny BERT, {args.steps} steps per trial, one worker, MLflow on (sqlite), "
          f"every trial a new config (reuse lookups on); "
          f"{' '.join(args.backend) or 'backend=local'}")
    print(f"{'run':<22}{'trials':>7}{'wall s':>9}{'trials s':>10}{'overhead s':>12}{'start-up s':>12}{'mean trial s':>14}")
    for name, r in rows:
        print(f"{name:<22}{r['n']:>7}{r['wall']:>9.2f}{r['trials']:>10.2f}{r['wall'] - r['trials']:>12.2f}"
              f"{r['startup']:>12.2f}{r['mean_trial']:>14.2f}")
    print(f"\nbookkeeping per extra trial, start-up taken out of both runs: {steady:.3f} s   goal <= 0.05 s; of which in "
          f"the worker (run creation, params, artifacts, closing the run): {long_['worker_bookkeeping']:.3f} s")
    print(f"the same from the overheads alone (start-up jitter included): {slope:.3f} s")
    gaps = long_["gaps"]
    if gaps:
        print(f"between one trial's end and the next one's start (long sweep, {len(gaps)} gaps): mean "
              f"{statistics.mean(gaps):.3f} s, median {statistics.median(gaps):.3f} s, max {max(gaps):.3f} s")
    print(f"first trial running after {long_['startup']:.2f} s (long sweep), {short['startup']:.2f} s (short)   goal <= 8 s")
    fixed = short["wall"] - short["trials"] - steady * short["n"]
    print(f"projected share of one-minute trials (12 trials): {(fixed + 12 * steady) / (12 * 60):.2%}")


if __name__ == "__main__":
    main()
