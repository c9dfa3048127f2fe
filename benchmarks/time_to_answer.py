"""Time to answer: how much compute does a sweep need to reach the answer of the full grid?

The question is qv_vs_all's (q,v only or every linear layer?) over a grid small enough to run whole here:
targets {qv, all_linear} x r {2, 4, 8, 16} x alpha/r {1, 2, 4} on the packaged MiniLM, `--steps` steps each.
Three real sweeps (`python -m sweep`, each in a fresh folder, one worker, the question's two arms with equal
budgets and a sampler each) answer it:
  grid         every config once: its answer is the reference (best arm, best config)
  tpe          TPE within each arm, the same budget as the grid
  hyperband    TPE plus Hyperband over training steps within each arm (intermediate evaluations every
               `--rung` steps on the fixed eval subset; an arm is compared only with itself)
For tpe and hyperband, in the order trials finished, the compute spent (summed trial time, pruned trials' partial
time included) until (a) the best arm is the grid's and (b) the best config so far is at least as accurate as the
grid's best or within the noise of it (sweep.noise.beyond_noise, the report's rule). Goal: the grid's answer for at most a third of its compute.

    python benchmarks/time_to_answer.py [--steps 80] [--rung 20]
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
from pathlib import Path

COMMON = ["sweep.workers=1", "sweep.progress=plain", "tracking=none", "sweep.baseline=false"]


def run_sweep(name: str, overrides: list[str], config_dir: Path) -> list:
    """The study's trials after a real sweep in a fresh folder."""
    import optuna

    with tempfile.TemporaryDirectory(prefix=f"lorasweep-tta-{name}-") as tmp:
        cmd = [sys.executable, "-m", "sweep", "--config-dir", str(config_dir), *overrides]
        out = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=7200)
        if out.returncode != 0:
            sys.exit(f"{name} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
        study = optuna.load_study(study_name="tta", storage=f"sqlite:///{Path(tmp) / 'sweeps/tta/study.db'}")
        return [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]


def _duration(t) -> float:
    return float((t.user_attrs.get("run") or {}).get("duration_s", 0.0))


def answer(trials) -> tuple[str, float, float]:
    """(best arm, best accuracy, its eval size) over the completed trials."""
    done = [t for t in trials if t.state.name == "COMPLETE"]
    best = max(done, key=lambda t: t.values[0])
    return best.user_attrs.get("arm", ""), best.values[0], float(best.user_attrs["metrics"]["eval_samples"])


def compute_to_answer(trials, ref: tuple[str, float, float]) -> tuple[float, int]:
    """(compute s, trials) spent in finishing order until the answer matches the grid's (None if never)."""
    from sweep.noise import beyond_noise

    spent, seen = 0.0, []
    for i, t in enumerate(sorted(trials, key=lambda t: t.datetime_complete)):
        spent += _duration(t)
        if t.state.name == "COMPLETE":
            seen.append(t)
            arm, acc, n = answer(seen)
            if arm == ref[0] and (acc >= ref[1] or not beyond_noise("eval_accuracy", acc, ref[1], a_n=n, b_n=ref[2])):
                return spent, i + 1
    return math.nan, len(trials)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=80, help="training steps of a full trial")
    ap.add_argument("--rung", type=int, default=20, help="steps between intermediate evaluations (hyperband)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="lorasweep-tta-conf-") as conf:
        (Path(conf) / "experiment").mkdir()
        (Path(conf) / "experiment" / "tta.yaml").write_text(EXPERIMENT)
        base = ["+experiment=tta", f"train.max_steps={args.steps}", *COMMON]
        grid = run_sweep("grid", [*base, "sweep.sampler=grid", "sweep.n_trials=24"], Path(conf))
        tpe = run_sweep("tpe", [*base, "sweep.sampler=tpe", "sweep.n_trials=24"], Path(conf))
        hb = run_sweep("hyperband", [*base, "sweep.sampler=tpe", "sweep.n_trials=24", "sweep.pruner=hyperband",
                                      f"train.eval_every={args.rung}"], Path(conf))
    ref = answer(grid)
    grid_compute = sum(_duration(t) for t in grid)
    print(f"\nMiniLM, {args.steps} steps per full trial; grid of 24 configs in two arms of 12; one worker")
    print(f"grid's answer: best arm {ref[0]}, best eval_accuracy {ref[1]:.4f} (n={ref[2]:.0f}); "
          f"grid compute {grid_compute:.0f} s")
    print(f"{'sweep':<12}{'trials run':>11}{'compute s':>11}{'to answer s':>13}{'trials':>8}{'share of grid':>15}")
    for name, trials in (("grid", grid), ("tpe", tpe), ("hyperband", hb)):
        spent, n = (grid_compute, len(grid)) if name == "grid" else compute_to_answer(trials, ref)
        print(f"{name:<12}{len(trials):>11}{sum(_duration(t) for t in trials):>11.0f}{spent:>13.0f}{n:>8}"
              f"{spent / grid_compute:>15.1%}")
    print("goal: the grid's answer (best arm, a config within the 95% Wilson interval of its best) for <= 33.3% of "
          "its compute")


EXPERIMENT = """# @package _global_
defaults:
  - override /lora: qv
name: tta
lora:
  alpha: null
  alpha_ratio: 2
  dropout: 0.0
sweep:
  n_startup_trials: 3
  objectives: [eval_accuracy]
  group_by: [lora.targets]
  space:
    lora.targets: {type: categorical, choices: [qv, all_linear]}
    lora.r: {type: categorical, choices: [2, 4, 8, 16]}
    lora.alpha_ratio: {type: categorical, choices: [1, 2, 4]}
"""

if __name__ == "__main__":
    main()
