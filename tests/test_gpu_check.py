"""make gpu-check's plumbing, where no GPU is: it refuses to pass without one, counts a skipped `gpu` test as a
failure, and its figures and table come out (a CPU dry run; the figures themselves are a GPU's: docs/gpu-check.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_gpu_check_without_a_gpu_says_so_and_fails(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: make gpu-check runs for real")
    done = subprocess.run(["bash", str(ROOT / ".ci" / "gpu_check.sh")], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, cwd=tmp_path)
    assert done.returncode == 2 and "no Python here whose torch sees a CUDA GPU" in done.stdout


def test_a_skipped_gpu_test_is_a_failed_check(tmp_path):
    """Under gpu-check, `gpu` tests that skip (here: no CUDA device) are failures, each with its reason."""
    import gpu_check
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the gpu tests would run")
    rows = gpu_check.run_tests(tmp_path)
    assert len(rows) >= 10 and all(r["verdict"] == "FAILED" for r in rows), rows
    assert all("counts a skip as a failure: needs a CUDA device" in r["detail"] for r in rows)


@pytest.mark.slow
def test_cpu_dry_run_writes_the_table(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--cpu-dry-run", "--skip-tests",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    text = (tmp_path / "gpu-check.md").read_text()
    assert "| fp32 | 2 x 32 |" in text and "| bf16 | 2 x 32 |" in text and "| row | batch x tokens | timed steps | peak MiB |" in text
    import json

    rows = json.loads((tmp_path / "gpu-check.json").read_text())["figures"]
    assert [r["row"] for r in rows] == ["fp32", "bf16"] and all(r["train_tokens_per_s"] > 0 for r in rows)
    assert all(r["flops_per_step"] > 0 and r["latency_per_token_ms_merged"] > 0 for r in rows)
