"""conf/ ships inside the package: a non-editable install, run from an empty folder, composes the shipped groups
and a user's own folder (--config-dir) on top of them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

EXPERIMENT = """# @package _global_
defaults:
  - override /model: my_tiny
  - override /train: fast
name: mine
data:
  train_size: 32
  eval_size: 16
sweep:
  n_trials: 2
  workers: 1
  sampler: grid
  space:
    lora.r: {type: categorical, choices: [1, 2]}
"""
MODEL = """defaults:
  - tiny_bert
  - _self_
name: my_tiny
hidden_size: 64
num_layers: 1
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The project built as a wheel and installed (no dependencies) into a folder of its own."""
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT), "-w", str(tmp)],
                   check=True, capture_output=True, cwd=tmp)
    wheel = next(tmp.glob("lorasweep-*.whl"))
    site = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    return site


def _env(site: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "LORASWEEP_CONF"}
    return {**env, "PYTHONPATH": str(site), "PYTHONUNBUFFERED": "1"}


@pytest.mark.slow
def test_installed_package_runs_a_users_experiment_from_an_empty_folder(installed, tmp_path):
    work = tmp_path / "project"
    (work / "my_conf" / "experiment").mkdir(parents=True)
    (work / "my_conf" / "model").mkdir()
    (work / "my_conf" / "experiment" / "mine.yaml").write_text(EXPERIMENT)
    (work / "my_conf" / "model" / "my_tiny.yaml").write_text(MODEL)
    env = _env(installed)
    where = subprocess.run([sys.executable, "-c", "import sweep.config.compose as c; print(c.conf_dir())"], env=env,
                           cwd=work, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(installed) and (Path(where) / "experiment" / "qv_vs_all.yaml").is_file()
    shown = subprocess.run([sys.executable, "-m", "sweep", "--config-dir", "my_conf", "+experiment=mine", "--cfg"],
                           env=env, cwd=work, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert "name: my_tiny" in shown.stdout and "hidden_size: 64" in shown.stdout and "num_heads: 2" in shown.stdout
    out = subprocess.run([sys.executable, "-m", "sweep", "--config-dir", "my_conf", "+experiment=mine", "tracking=none",
                          "sweep.progress=plain"], env=env, cwd=work, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "study mine: 2 complete" in out.stdout
    assert sorted(p.name.split("-")[0] for p in (work / "sweeps" / "mine" / "trials").iterdir()) == ["0000", "0001"]


def test_user_file_shadowing_a_shipped_one_is_refused(tmp_path):
    from sweep.config.compose import compose
    from sweep.config.errors import ConfigError

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "minilm.yaml").write_text("name: mine\n")
    with pytest.raises(ConfigError) as exc:
        compose([], [str(tmp_path)])
    assert str(exc.value).startswith("--config-dir:") and "model/minilm.yaml" in str(exc.value) and "rename" in str(exc.value)
    with pytest.raises(ConfigError, match="--config-dir: no folder"):
        compose([], [str(tmp_path / "absent")])
