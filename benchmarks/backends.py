"""Orchestration overhead and worker efficiency of `python -m sweep`, against a plain in-process loop.

Runs, in one process and on the same trial configs:
  baseline  - a plain loop calling run_trial(cfg) (no Optuna, no MLflow, no workers)
  local xW  - the real coordinator with W worker processes (sweep.backend=local), sqlite Optuna storage and MLflow
  ray xW    - the same with W Ray worker actors on a private single-machine Ray (sweep.backend=ray
              sweep.ray.address=local; Ray's own start-up is counted in start s)
  ray-cluster xW - the same against an already running Ray cluster, the way a cluster is used (`ray start` once,
              then sweeps with sweep.ray.address=<head>): the real two-node loopback cluster of .ci/ray_cluster.py
              (1 CPU and 2 logical GPUs per node: each actor reserves a logical GPU), started before and stopped after these rows, outside their time
and prints a table: wall time, summed trial time, overhead (W x wall - summed trial time, i.e. worker-seconds
not spent inside a trial: start-up, dispatch, storage and tracking), overhead per trial and as a share of trial
time, worker efficiency (summed trial time / (W x wall)), and the share extrapolated to one-minute trials
(fixed start-up amortised over the same number of trials, per-trial cost unchanged).

    python benchmarks/backends.py [--trials 8] [--steps 40] [--workers 1 2] [--backends local ray]

Both backends get the same torch threads per worker (cores / W), so their trial times compare.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=12, help="trials per sweep (12 = the default experiments)")
    ap.add_argument("--steps", type=int, default=40, help="training steps per trial (tiny BERT)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to measure")
    ap.add_argument("--model", default="tiny_bert", help="model config option")
    ap.add_argument("--backends", nargs="+", choices=["local", "ray", "ray-cluster"],
                    default=["local", "ray", "ray-cluster"] if importlib.util.find_spec("ray") else ["local"],
                    help="what to measure (ray: a private Ray on this machine; ray-cluster: a running two-node cluster)")
    args = ap.parse_args()

    from sweep.quiet import quiet_libraries

    quiet_libraries()
    from sweep.config.compose import compose, trial_dict
    from sweep.config.schema import TrialConfig
    from sweep.orchestration.coordinator import Coordinator
    from sweep.trial import run_trial

    common = ["+experiment=smoke", f"model={args.model}", f"train.max_steps={args.steps}", "train.eval_every=0",
              "data.train_size=256", "data.eval_size=64", "sweep.sampler=grid", f"sweep.n_trials={args.trials}",
              "sweep.progress=plain", "sweep.reuse_completed=false"]
    rows = []
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="lorasweep-bench-") as tmp:
        os.chdir(tmp)
        # baseline: the same grid points, run back to back in this process (threads = all cores, like 1 worker)
        run = compose(common)
        import itertools

        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        space = run.sweep.space
        combos = list(itertools.product(*[s.choices for s in space.values()]))[: args.trials]
        while len(combos) < args.trials:
            combos += combos[: args.trials - len(combos)]
        run_trial(TrialConfig.from_dict(trial_dict(run.overrides, dict(zip(space, combos[0])), set()))  # warm imports
                  ).status
        t0 = time.perf_counter()
        durations = []
        for combo in combos:
            cfg = TrialConfig.from_dict(trial_dict(run.overrides, dict(zip(space, combo)), set()))
            durations.append(run_trial(cfg).duration_s)
        base_wall = time.perf_counter() - t0
        rows.append(("baseline loop", 1, base_wall, sum(durations), 0.0))

        for backend in args.backends:
            with cluster(backend == "ray-cluster") as address:
                for w in args.workers:
                    threads = max(1, (os.cpu_count() or 1) // w)
                    # the cluster has logical GPUs: each actor reserves one (no GPU is used) and runs `threads` threads
                    where = [f"sweep.ray.address={address}"] if address else [
                        "sweep.ray.address=local", f"sweep.ray.cpus_per_worker={threads}"]
                    run = compose([*common, f"sweep.workers={w}", f"sweep.study_name=bench_{backend}_w{w}".replace("-", "_"),
                                   f"sweep.backend={backend.removesuffix('-cluster')}", f"sweep.threads_per_worker={threads}",
                                   *where])
                    t0 = time.perf_counter()
                    summary = Coordinator(run).run()
                    wall = time.perf_counter() - t0
                    assert summary.n_complete == args.trials, summary
                    rows.append((f"{backend} x{w}", w, wall, summary.trial_compute_s, summary.startup_s))

    n = args.trials
    base_trial = rows[0][3] / n
    print(f"\n{n} trials of {args.steps} steps ({args.model}); baseline trial {base_trial:.2f}s; {os.cpu_count()} cores; "
          f"{time.strftime('%Y-%m-%d %H:%M')}; load average {load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end")
    hdr = (f"{'run':<18}{'W':>3}{'wall s':>8}{'start s':>8}{'trial s':>8}{'trial/base':>11}{'ovh/trial s':>12}"
           f"{'ovh share':>10}{'effic.':>8}{'speed':>7}{'share@60s':>10}")
    print(hdr)
    print("-" * len(hdr))
    for name, w, wall, compute, startup in rows:
        steady = (w * (wall - startup) - compute) / n  # worker-seconds per trial outside trials, after start-up
        share = (w * wall - compute) / compute
        eff = compute / (w * wall)
        inflation = (compute / n) / base_trial
        share60 = (w * startup + n * steady) / (n * 60.0)
        print(f"{name:<18}{w:>3}{wall:>8.1f}{startup:>8.1f}{compute:>8.1f}{inflation:>10.2f}x{steady:>12.2f}"
              f"{share:>10.1%}{eff:>8.1%}{rows[0][2] / wall:>6.2f}x{share60:>10.2%}")
    print("\nstart s: until every worker has imported torch/peft; ovh/trial: (W x (wall - start) - trial s) / trials, "
          "i.e. dispatch, storage, tracking per trial;\ntrial/base: mean trial time in the sweep (MLflow logging and "
          "thread count included) over the baseline's; share@60s: start-up plus per-trial overhead against one-minute trials")


@contextlib.contextmanager
def cluster(wanted: bool):
    """A running two-node Ray cluster on loopback (.ci/ray_cluster.py) for the rows inside: its address, with
    the cluster's auth variables set for this process; None when not wanted."""
    if not wanted:
        yield None
        return
    script = [sys.executable, str(ROOT / ".ci" / "ray_cluster.py")]
    out = subprocess.run([*script, "start"], capture_output=True, text=True, check=True).stdout
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")}
    os.environ.update({k: env[k] for k in saved if k in env})
    try:
        yield env["LORASWEEP_TEST_RAY_ADDRESS"]
    finally:
        subprocess.run([*script, "stop", env["LORASWEEP_TEST_CLUSTER_DIR"]], check=False)
        shutil.rmtree(env["LORASWEEP_TEST_CLUSTER_DIR"], ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


if __name__ == "__main__":
    sys.exit(main())
