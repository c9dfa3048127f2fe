"""Shared fixtures: tiny models, a repository-rooted working directory, composed configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

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
