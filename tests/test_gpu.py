"""On a GPU (marked `gpu`: skipped without CUDA; `make gpu-check` runs them and counts a skip as a failure, except
those that need a second GPU or Ray, which it lists as not run). The models are tiny or shaped (shipped config and
tokenizer, random weights: sweep/models/shapes), so they need no weight package, and tracking is off.

Each checks on the device what the CPU tests can only check by construction: one precision for every measurement,
NF4 with bf16 compute, CUDA-allocated peaks reset per trial, workers sharing a GPU, a broken CUDA context ending its
worker, a trial across two GPUs, and fractional Ray GPUs.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from sweep.config.compose import compose
from sweep.results import TrialStatus
from sweep.trial import run_trial
from test_trial import spy_merge_check

pytestmark = pytest.mark.gpu
GPU = ["train=fast", "data.train_size=64", "data.eval_size=32", "tracking=none", "train.device=cuda"]


@pytest.fixture(autouse=True)
def cuda():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    return torch


def _meta(folder: Path) -> dict:
    return json.loads((folder / "meta.json").read_text())


def test_bf16_trial_measures_unmerged_and_merged_at_one_precision(cuda, monkeypatch, tmp_path):
    seen = spy_merge_check(monkeypatch)
    cfg = compose([*GPU, "model=minilm_shaped", "train.precision=bf16", "train.max_steps=4"]).trial
    res = run_trial(cfg, output_dir=tmp_path)
    assert res.status is TrialStatus.COMPLETE, res.error
    assert seen == {"unmerged": {cuda.bfloat16}, "merged": {cuda.bfloat16}}
    meta = _meta(tmp_path)
    assert meta["measure_precision"] == "bf16" and meta["memory_kind"] == "cuda_allocated"
    assert res.metrics["peak_memory_mb"] > 0 and res.metrics["merge_max_abs_diff"] < 0.05


def test_nf4_qlora_trains_with_bf16_compute_on_smollm2(cuda, tmp_path):
    """train=gpu + quant=nf4 on a bf16-capable GPU: precision and 4-bit compute dtype resolve to bf16 (auto)."""
    if cuda.cuda.get_device_capability() < (8, 0):
        pytest.skip("needs a GPU with bf16 (compute capability 8.0)")
    cfg = compose([*GPU, "model=smollm2_135m_shaped", "data=instruct_llm", "train=gpu", "quant=nf4", "lora=qv",
                   "train.max_steps=4", "train.batch_size=4", "data.max_seq_len=128", "train.eval_batch_size=8",
                   "data.max_new_tokens=4", "train.latency_max_iters=6"]).trial
    assert (cfg.train.precision, cfg.quant.compute_dtype) == ("bf16", "bfloat16")
    res = run_trial(cfg, output_dir=tmp_path)
    assert res.status is TrialStatus.COMPLETE, res.error
    fp32 = compose([*GPU, "model=smollm2_135m_shaped", "data=instruct_llm", "lora=qv"]).trial
    from sweep.plan.build import model_facts

    assert res.metrics["weights_mb"] < model_facts(fp32, None).stored_bytes / 2**20 / 3  # 4-bit: under a third
    assert _meta(tmp_path)["memory_kind"] == "cuda_allocated" and res.metrics["latency_per_token_ms"] > 0


def test_peak_memory_is_cuda_allocated_and_reset_per_trial(tmp_path):
    """A small trial after a large one reads its own peak, not the large one's."""
    small = compose([*GPU, "model=minilm_shaped", "train.max_steps=2", "train.batch_size=8"]).trial
    large = compose([*GPU, "model=minilm_shaped", "train.max_steps=2", "train.batch_size=128",
                     "data.max_seq_len=256"]).trial
    first = run_trial(small, output_dir=tmp_path / "a")
    big = run_trial(large, output_dir=tmp_path / "b")
    again = run_trial(small, output_dir=tmp_path / "c")
    assert all(r.status is TrialStatus.COMPLETE for r in (first, big, again)), [first.error, big.error, again.error]
    assert big.metrics["peak_memory_mb"] > 2 * first.metrics["peak_memory_mb"]
    assert again.metrics["peak_memory_mb"] == pytest.approx(first.metrics["peak_memory_mb"], rel=0.05)


def _sweep(tmp_path, *overrides):
    from sweep.orchestration.coordinator import Coordinator

    run = compose(["+experiment=smoke", "tracking=none", "sweep.progress=plain", "train.device=cuda",
                   f"sweep.output_dir={tmp_path / 'sweeps'}", *overrides])
    summary = Coordinator(run).run()
    url = f"sqlite:///{tmp_path / 'sweeps' / 'smoke' / 'study.db'}"
    return summary, {t.number: t for t in optuna.load_study(study_name="smoke", storage=url).get_trials()}


def _metas(tmp_path) -> list[dict]:
    return [_meta(f) for f in sorted((tmp_path / "sweeps" / "smoke" / "trials").iterdir()) if (f / "meta.json").exists()]


def test_two_workers_share_one_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setenv("LORASWEEP_GPU_LOCK_DIR", str(tmp_path / "locks"))
    summary, trials = _sweep(tmp_path, "sweep.workers_per_gpu=2")
    assert summary.n_complete == 6 and summary.n_failed == 0
    metas = _metas(tmp_path)
    assert len(metas) == 6 and all(m["placement"]["gpu_share"] == "2" and m["gpu_share"] == 2 for m in metas)
    assert all("gpu_lock_wait_timing_s" in m for m in metas)  # every latency timing took the GPU's lock
    assert len({m["placement"]["pid"] for m in metas}) == 2


def test_a_broken_cuda_context_ends_its_worker(tmp_path, monkeypatch):
    """A real device-side assert (an out-of-range index on the GPU) fails its trial and its worker is replaced; the
    trials after it complete on the new worker."""
    monkeypatch.setenv("LORASWEEP_FAULTS", "1:device_assert")
    summary, trials = _sweep(tmp_path, "sweep.workers=1", "sweep.n_trials=3", "sweep.sampler=random",
                             "sweep.reuse_completed=false")
    reason = trials[1].user_attrs.get("failure_reason", "")
    assert trials[1].state == optuna.trial.TrialState.FAIL and reason.startswith("CUDA broken:"), reason
    assert summary.n_complete == 3
    pids = {m["placement"]["pid"] for m in _metas(tmp_path)}
    assert len(pids) == 2  # the worker after the assert is another process


def test_a_trial_across_two_gpus(cuda, tmp_path):
    if cuda.cuda.device_count() < 2:
        pytest.skip("needs 2 GPUs")
    summary, _ = _sweep(tmp_path, "sweep.gpus_per_worker=2", "sweep.n_trials=2", "sweep.sampler=random")
    assert summary.n_complete == 2
    assert all("," in m["placement"]["gpu"] for m in _metas(tmp_path))


def test_ray_with_fractional_gpus(tmp_path):
    pytest.importorskip("ray", reason="needs ray")
    summary, _ = _sweep(tmp_path, "sweep.backend=ray", "sweep.ray.address=local", "sweep.workers_per_gpu=2",
                        "sweep.n_trials=4", "sweep.sampler=random")
    assert summary.n_complete == 4
    assert all(m["placement"]["gpu_share"] == "2" for m in _metas(tmp_path))
