"""Shared fixtures: tiny models, a repository-rooted working directory, composed configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the test settings train on the CPU, on a GPU host too (train.device's default reads it: conf/train/default.yaml);
# the `gpu` tests ask for train.device=cuda themselves
os.environ.setdefault("LORASWEEP_TRAIN_DEVICE", "cpu")
GPU_CHECK_ENV = "LORASWEEP_GPU_CHECK"  # set by make gpu-check: a skipped `gpu` test is a failure there ...
NOT_RUN_ON_ONE_GPU = ("needs 2 GPUs", "needs ray")  # ... except these, which it lists as not run

from sweep.quiet import quiet_libraries  # noqa: E402

quiet_libraries()

# a few seconds per trial: tiny model, tiny data, no adapter-save/latency overhead to speak of
TINY = ["train=fast", "data.train_size=64", "data.eval_size=32", "tracking=none"]


@pytest.fixture
def compose_trial():
    from sweep.config.compose import compose

    def _compose(*overrides: str):
        return compose([*TINY, *overrides]).trial

    return _compose


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in a temp folder (sweeps/, .mlflow/ land there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under make gpu-check (GPU_CHECK_ENV), a `gpu` test that skips fails: a missing package or a machine without
    the GPU it needs must not pass as a green check."""
    outcome = yield
    rep = outcome.get_result()
    if not (os.environ.get(GPU_CHECK_ENV) and rep.skipped and item.get_closest_marker("gpu")):
        return
    reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
    reason = str(reason).removeprefix("Skipped: ")
    if not reason.startswith(NOT_RUN_ON_ONE_GPU):
        rep.outcome = "failed"
        rep.longrepr = f"skipped under make gpu-check, which counts a skip as a failure: {reason}"
