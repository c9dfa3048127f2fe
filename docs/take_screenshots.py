"""Screenshots of the two browsers of a study, taken in a real headless Chromium: the MLflow UI and optuna-dashboard.

    python docs/take_screenshots.py [--study NAME] [--workdir DIR] [--out docs/img]

Without --workdir, it runs the `smoke` experiment in a temporary folder first. Then it starts
`mlflow ui` and `optuna-dashboard` on free ports of 127.0.0.1 (the real servers, as `make ui`
and `make dashboard` start them), waits until they answer, lets Chromium render each page and
writes docs/img/mlflow_ui.png and docs/img/optuna_dashboard.png. The servers are stopped by
their own pid. Needs Chromium (`apt-get install chromium`) and optuna-dashboard
(`pip install -e '.[ui]'`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, timeout_s: float = 120) -> bytes:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            return urllib.request.urlopen(url, timeout=5).read()
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"no answer from {url} within {timeout_s:.0f}s")


def start(cmd: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)


def screenshot(url: str, path: Path, width: int = 1440, height: int = 900) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        raise SystemExit("no Chromium found: apt-get install chromium")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={profile}", f"--window-size={width},{height}", "--virtual-time-budget=20000",
                        f"--screenshot={path}", url], check=True, capture_output=True, timeout=180)
    print(f"{path}  <- {url}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default="smoke", help="study to show (default smoke)")
    ap.add_argument("--workdir", default=None, help="folder holding sweeps/ and .mlflow/ (default: run smoke in a temp folder)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "img"), help="where the PNGs go")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="lorasweep-shots-")
        work = Path(tmp.name)
        subprocess.run([sys.executable, "-m", "sweep", "+experiment=smoke", "sweep.progress=plain"], cwd=work, check=True)
    else:
        work = Path(args.workdir).resolve()
    procs = []
    try:
        mport, oport = free_port(), free_port()
        procs.append(start([str(BIN / "mlflow"), "ui", "--backend-store-uri", "sqlite:///.mlflow/mlflow.db",
                            "--default-artifact-root", ".mlflow/artifacts", "--host", "127.0.0.1", "--port", str(mport)], work))
        storage = f"sqlite:///{work / 'sweeps' / args.study / 'study.db'}"
        procs.append(start([str(BIN / "optuna-dashboard"), storage, "--host", "127.0.0.1", "--port", str(oport)], work))
        body = wait_for(f"http://127.0.0.1:{mport}/api/2.0/mlflow/experiments/get-by-name?experiment_name={args.study}")
        exp_id = json.loads(body)["experiment"]["experiment_id"]
        wait_for(f"http://127.0.0.1:{oport}/api/studies")
        screenshot(f"http://127.0.0.1:{mport}/#/experiments/{exp_id}/runs?workflowType=machine_learning", out / "mlflow_ui.png")
        screenshot(f"http://127.0.0.1:{oport}/dashboard/studies/1", out / "optuna_dashboard.png")
    finally:
        for p in procs:
            stop(p)
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
