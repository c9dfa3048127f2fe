"""A tiny real sweep, then the report built from its MLflow runs, then a reproduction from a config hash."""

from __future__ import annotations

import pytest

from pathlib import Path

import pandas as pd

from sweep.config.compose import compose
from sweep.orchestration.coordinator import Coordinator


@pytest.mark.slow
def test_sweep_report_reproduce(in_tmp, capsys):
    run = compose(["+experiment=smoke", "sweep.n_trials=4", "sweep.progress=plain"])
    summary = Coordinator(run).run()
    assert summary.n_complete == 4

    from sweep.report.__main__ import main as report_main

    assert report_main(["smoke"]) == 0
    folder = Path("reports/smoke")
    table = pd.read_csv(folder / "trials.csv")
    assert sorted(table["trial"].tolist()) == [0, 1, 2, 3]
    md = (folder / "report.md").read_text()
    html = (folder / "report.html").read_text()
    hashes = table["config_hash"].tolist()
    assert all(h in md and h in html for h in hashes)
    assert "data:image/png;base64," in html and "Pareto" in md and "Recommend" in md
    assert list(folder.glob("pareto_*.png"))

    from sweep.reproduce import main as reproduce_main

    assert reproduce_main([hashes[0][:6]]) == 0  # bit-identical on CPU
    out = capsys.readouterr().out
    assert "eval_accuracy" in out and "eval_loss" in out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_mlflow_ui_serves_the_embedded_store(in_tmp):
    """`make ui` is the real MLflow server on the embedded sqlite store, bound to 127.0.0.1."""
    import json
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    run = compose(["+experiment=smoke", "sweep.n_trials=2", "sweep.workers=1", "sweep.progress=plain"])
    Coordinator(run).run()
    port = _free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow_bin), "ui", "--backend-store-uri", "sqlite:///.mlflow/mlflow.db", "--default-artifact-root",
           ".mlflow/artifacts", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        body = None
        deadline = time.time() + 90
        while time.time() < deadline and body is None:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name?experiment_name=smoke")
                body = json.loads(urllib.request.urlopen(req, timeout=5).read())
            except OSError:
                time.sleep(0.5)
        assert body is not None, "mlflow ui did not answer"
        exp_id = body["experiment"]["experiment_id"]
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/2.0/mlflow/runs/search", method="POST",
                                     data=json.dumps({"experiment_ids": [exp_id], "max_results": 100}).encode(),
                                     headers={"Content-Type": "application/json"})
        runs = json.loads(urllib.request.urlopen(req, timeout=10).read())["runs"]
        roles = sorted(next(t["value"] for t in r["data"]["tags"] if t["key"] == "lorasweep.role") for r in runs)
        assert roles == ["baseline", "parent", "trial", "trial"]  # the base model measured once per study
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read()
        assert b"MLflow" in page or b"mlflow" in page
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(20)
