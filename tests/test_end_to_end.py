"""A tiny real sweep, then the report built from its MLflow runs, then a reproduction from a config hash."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sweep.config.compose import compose
from sweep.orchestration.coordinator import Coordinator


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
