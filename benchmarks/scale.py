"""How the coordinator's own cost grows with the study: 100, 1,000, 10,000 trials.

Drives the real coordinator, dispatcher, Optuna storage (sqlite, or PostgreSQL) and, with --mlflow, the real MLflow
tracking, on an in-process pool whose trials finish at once (orchestration/inprocess_pool.py: a harness for the
coordinator's own cost, not a way to run trials). With --mlflow each trial goes through the worker's real `execute`
(trial folder, config.yaml, its MLflow run opened, tagged, its folder logged, closed), with `run_trial` replaced by
one that returns at once; without it, the runner returns the result directly. The question is the smoke
experiment's (two question arms over lora.targets, each with its own sampler), with a continuous dropout and learning
rate so that no two trials share a config.

Per size it prints: per-trial coordinator time (the run's wall time less the runner's own time, over the trials;
and the marginal cost over the last 10% of trials), the coordinator's resident memory at the end (this process:
the harness adds nothing that grows per trial), and with --mlflow the time of `python -m sweep.report` and of the
reproduce lookup (`find_original` of the last trial's hash) on the resulting study.

--check-real N compares the harness with the real thing: N tiny-model trials of one step through real local worker
processes against the same N through the harness, coordinator time per trial in both (the real run's is its wall
time less each trial's own duration and less the worker's bookkeeping: the part the coordinator waits on).

    python benchmarks/scale.py [--sizes 100 1000 10000] [--samplers tpe random] [--storage sqlite postgres]
                               [--postgres-url URL] [--mlflow] [--check-real 200]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = """# @package _global_
defaults:
  - override /model: tiny_bert
  - override /train: fast
name: scale
data: {train_size: 64, eval_size: 32}
train: {latency_max_iters: 6, eval_every: 0, max_steps: 1}
sweep:
  workers: 2
  progress: plain
  baseline: false
  retry_failed: 0
  objectives: [eval_accuracy]
  group_by: [lora.targets]
  space:
    lora.targets: {type: categorical, choices: [qv, all_linear]}
    lora.r: {type: categorical, choices: [1, 2, 4, 8]}
    lora.dropout: {type: float, low: 0.0, high: 0.3}
    train.lr: {type: float, low: 1.0e-5, high: 1.0e-2, log: true}
"""


def _conf_dir() -> Path:
    conf = Path(tempfile.mkdtemp(prefix="lorasweep-scale-conf-"))
    (conf / "experiment").mkdir()
    (conf / "experiment" / "scale.yaml").write_text(EXPERIMENT)
    return conf


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


class Runner:
    """The worker of the harness: a result at once, its own time summed (subtracted from the coordinator's)."""

    def __init__(self, mlflow: bool):
        self.mlflow = mlflow
        self.spent = 0.0
        self.calls: list[float] = []  # perf_counter at each call's end (8 bytes a trial: the harness's only growth)

    def __call__(self, task):
        from sweep.results import TrialResult, TrialStatus

        t0 = time.perf_counter()
        cfg = task.config
        acc = 0.5 + 0.1 * (cfg["lora"]["r"] / 8) - abs(cfg["lora"]["dropout"] - 0.1)
        result = TrialResult(TrialStatus.COMPLETE, {"eval_accuracy": acc, "trainable_ratio": cfg["lora"]["r"] / 1000},
                             config_hash=task.config_hash, duration_s=0.0, meta={"device": "cpu"})
        if self.mlflow:
            from sweep.orchestration.protocol import Placement
            from sweep.orchestration.worker import execute

            import sweep.trial

            sweep.trial.run_trial = lambda cfg, **kw: result  # the worker's real path around a trial that is instant
            result = execute(task, wid=0, send=lambda ev: None, ask_prune=lambda *a: False, where=Placement.here(None))
        t1 = time.perf_counter()
        self.spent += t1 - t0
        self.calls.append(t1)
        return result


def one_run(size: int, sampler: str, storage: str | None, mlflow: bool, folder: Path, conf: Path, study: str) -> dict:
    from sweep.config.compose import compose
    from sweep.orchestration.coordinator import Coordinator
    from sweep.orchestration.inprocess_pool import InProcessPool

    overrides = ["+experiment=scale", f"sweep.n_trials={size}", f"sweep.sampler={sampler}", f"name={study}",
                 f"sweep.output_dir={folder / 'sweeps'}", "tracking=mlflow" if mlflow else "tracking=none"]
    if mlflow:
        overrides += [f"tracking.tracking_uri=sqlite:///{folder / '.mlflow/mlflow.db'}",
                      f"tracking.artifact_location={folder / '.mlflow/artifacts'}"]
    if storage:
        overrides.append(f"sweep.storage={storage}")
    run = compose(overrides, [str(conf)])
    runner = Runner(mlflow)
    rss0 = rss_mb()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        summary = Coordinator(run, pool=InProcessPool(runner, 2, keep_tasks=False)).run()
    wall = time.perf_counter() - t0
    assert summary.n_complete == size, (summary.n_complete, size)
    # marginal: the last 10% of trials, from the call before the window to the last call
    k = max(1, size // 10)
    window = runner.calls[-1] - runner.calls[-k - 1]
    out = {"size": size, "sampler": sampler, "storage": "postgres" if storage else "sqlite", "mlflow": mlflow,
           "per_trial_ms": 1000 * (wall - runner.spent) / size, "marginal_ms": 1000 * window / k,
           "rss_mb": rss_mb(), "rss_growth_mb": rss_mb() - rss0, "wall_s": wall}
    if mlflow:
        out.update(report_and_reproduce(folder, study, run))
    return out


def report_and_reproduce(folder: Path, study: str, run) -> dict:
    import optuna

    from sweep.reproduce.lookup import find_original

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "sweep.report", study, "--tracking-uri",
                           f"sqlite:///{folder / '.mlflow/mlflow.db'}", "--out", str(folder / "reports")],
                          cwd=folder, env=env, capture_output=True, text=True)
    report_s = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
    url = run.sweep.storage or f"sqlite:///{folder / 'sweeps' / study / 'study.db'}"
    last = optuna.load_study(study_name=study, storage=url).get_trials(deepcopy=False)[-1].user_attrs["config_hash"]
    t0 = time.perf_counter()
    find_original(last, f"sqlite:///{folder / '.mlflow/mlflow.db'}", folder / "sweeps")
    return {"report_s": report_s, "report_rc": proc.returncode, "reproduce_lookup_s": time.perf_counter() - t0}


def check_real(n: int, conf: Path) -> None:
    """Coordinator time per trial: n real tiny trials through local worker processes vs the same n in the harness."""
    import optuna

    from sweep.config.compose import compose
    from sweep.orchestration.coordinator import Coordinator

    folder = Path(tempfile.mkdtemp(prefix="lorasweep-scale-real-"))
    try:
        run = compose(["+experiment=scale", f"sweep.n_trials={n}", "sweep.sampler=random", "name=real", "tracking=none",
                       "sweep.workers=1", f"sweep.output_dir={folder / 'sweeps'}"], [str(conf)])
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            summary = Coordinator(run).run()
        wall = time.perf_counter() - t0 - summary.startup_s
        trials = optuna.load_study(study_name="real", storage=f"sqlite:///{folder / 'sweeps/real/study.db'}").get_trials()
        runs = [t.user_attrs["run"] for t in trials if "run" in t.user_attrs]
        worker = sum(r["duration_s"] + (r.get("bookkeeping_s") or 0.0) for r in runs)
        real = 1000 * (wall - worker) / n
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix="lorasweep-scale-harness-"))
    try:
        harness = one_run(n, "random", None, False, folder, conf, "harness")["per_trial_ms"]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"\ncheck against real workers, {n} trials, 1 worker, random sampler, sqlite, tracking off:")
    print(f"  coordinator per trial: real local pool {real:.1f} ms (wall less start-up, trials and worker bookkeeping),"
          f" harness {harness:.1f} ms, ratio real/harness {real / harness:.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    ap.add_argument("--samplers", nargs="+", default=["tpe", "random"], choices=["tpe", "random"])
    ap.add_argument("--storage", nargs="+", default=["sqlite"], choices=["sqlite", "postgres"])
    ap.add_argument("--postgres-url", default=os.environ.get("LORASWEEP_TEST_POSTGRES_URL"))
    ap.add_argument("--mlflow", action="store_true", help="track every trial in MLflow; time report and reproduce")
    ap.add_argument("--check-real", type=int, default=0, metavar="N")
    args = ap.parse_args()
    if "postgres" in args.storage and not args.postgres_url:
        print("error: --storage postgres needs --postgres-url (or LORASWEEP_TEST_POSTGRES_URL; .ci/start_postgres.sh "
              "starts one)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT / "src"))
    from sweep.quiet import quiet_libraries

    quiet_libraries()
    conf = _conf_dir()
    stamp = datetime.datetime.now().strftime("%H%M%S")
    print(f"# benchmarks/scale.py on {platform.node()} ({os.cpu_count()} cores), "
          f"{datetime.date.today().isoformat()}, mlflow={'on' if args.mlflow else 'off'}")
    print("| storage | sampler | trials | per trial ms | marginal ms (last 10%) | coordinator RSS MiB | wall s"
          + (" | report s | reproduce lookup s |" if args.mlflow else " |"))
    print("|---|---|---|---|---|---|---|" + ("---|---|" if args.mlflow else ""))
    rows = []
    try:
        for storage in args.storage:
            for sampler in args.samplers:
                for size in args.sizes:
                    folder = Path(tempfile.mkdtemp(prefix="lorasweep-scale-"))
                    try:
                        r = one_run(size, sampler, args.postgres_url if storage == "postgres" else None, args.mlflow,
                                    folder, conf, f"scale_{sampler}_{size}_{stamp}")
                    finally:
                        shutil.rmtree(folder, ignore_errors=True)
                    rows.append(r)
                    line = (f"| {r['storage']} | {sampler} | {size} | {r['per_trial_ms']:.1f} | {r['marginal_ms']:.1f} | "
                            f"{r['rss_mb']:.0f} | {r['wall_s']:.1f} |")
                    if args.mlflow:
                        line += f" {r['report_s']:.1f}{'' if r['report_rc'] == 0 else ' (rc ' + str(r['report_rc']) + ')'} | {r['reproduce_lookup_s']:.2f} |"
                    print(line, flush=True)
        for storage in args.storage:
            for sampler in args.samplers:
                mine = {r["size"]: r for r in rows if r["storage"] == storage and r["sampler"] == sampler}
                lo, hi = min(mine), max(mine)
                if lo != hi:
                    print(f"{storage}/{sampler}: per-trial cost at {hi} / at {lo} = "
                          f"{mine[hi]['per_trial_ms'] / mine[lo]['per_trial_ms']:.2f} (marginal "
                          f"{mine[hi]['marginal_ms'] / mine[lo]['marginal_ms']:.2f}); goal <= 2")
        if args.check_real:
            check_real(args.check_real, conf)
    finally:
        shutil.rmtree(conf, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
