"""One trial on tiny models: metrics, merge equivalence, QLoRA memory, exact reruns, failures as statuses."""

from __future__ import annotations

import math

import pytest

from sweep import metrics as mt
from sweep.results import TrialStatus
from sweep.trial import run_trial

CAUSAL_ONLY = {"generation_tokens_per_s", "latency_per_token_ms", "merged_latency_per_token_ms"}


def test_trial_produces_every_declared_metric(compose_trial, tmp_path):
    cfg = compose_trial("model=tiny_bert", "lora=qv", "lora.r=4")
    res = run_trial(cfg, output_dir=tmp_path)
    assert res.status is TrialStatus.COMPLETE, res.error
    expected = {m.name for m in mt.METRICS} - CAUSAL_ONLY
    assert expected <= set(res.metrics), expected - set(res.metrics)
    assert all(math.isfinite(res.metrics[k]) for k in expected)
    assert 0 <= res.metrics["eval_accuracy"] <= 1
    assert res.metrics["eval_samples"] == 32
    assert res.metrics["train_steps"] == 6
    assert res.metrics["trainable_ratio"] == pytest.approx(res.metrics["trainable_params"] / res.metrics["total_params"])
    assert res.metrics["latency_p95_ms"] >= res.metrics["latency_p50_ms"] > 0
    assert (tmp_path / "adapter" / "adapter_model.safetensors").stat().st_size > 0
    assert (tmp_path / "result.json").exists() and (tmp_path / "meta.json").exists()
    for key in ("git_sha", "git_dirty", "versions", "device", "model_fingerprint", "data_fingerprint", "config_hash", "seed"):
        assert key in res.meta
    assert [s for s, _ in res.curves["eval_accuracy"]] == [3, 6]


def test_merged_and_unmerged_logits_agree(compose_trial):
    for lora in ("qv", "dora", "rslora"):
        res = run_trial(compose_trial("model=tiny_bert", f"lora={lora}", "train.save_adapter=false"))
        assert res.status is TrialStatus.COMPLETE, res.error
        assert res.metrics["merge_max_abs_diff"] < 1e-4, lora


def test_rerun_reproduces_metrics_exactly(compose_trial):
    cfg = compose_trial("model=tiny_llama", "lora=qkvo", "lora.dropout=0.1", "train.save_adapter=false")
    a, b = run_trial(cfg), run_trial(cfg)
    for k in ("eval_accuracy", "eval_loss", "train_loss", "trainable_params", "total_params"):
        assert a.metrics[k] == b.metrics[k], k  # bit-identical on CPU
    assert a.meta["data_fingerprint"] == b.meta["data_fingerprint"]


def test_instruction_tuning_on_tiny_llama(compose_trial):
    cfg = compose_trial("model=tiny_llama", "data=instruct", "lora=all_linear")
    res = run_trial(cfg)
    assert res.status is TrialStatus.COMPLETE, res.error
    assert all(res.metrics[k] > 0 for k in CAUSAL_ONLY)
    assert res.meta["prompt_format"] == "plain"  # the MiniLM tokenizer of tiny_llama has no chat template
    assert 0 <= res.metrics["eval_accuracy"] <= 1 and math.isfinite(res.metrics["eval_loss"])


def test_adalora_trains(compose_trial):
    res = run_trial(compose_trial("model=tiny_bert", "lora=adalora", "train.save_adapter=false"))
    assert res.status is TrialStatus.COMPLETE, res.error
    assert res.metrics["adapter_params"] > 0


_MEASURE = """
import json, sys
from sweep.quiet import quiet_libraries; quiet_libraries()
from sweep.config.compose import compose
from sweep.trial import run_trial

CAUSAL_ONLY = {"generation_tokens_per_s", "latency_per_token_ms", "merged_latency_per_token_ms"}
tiny = ["train=fast", "data.train_size=64", "data.eval_size=32", "tracking=none"]
# one-time library initialisation (bitsandbytes kernels) is paid before the measured trial, as in a worker
run_trial(compose([*tiny, "model=tiny_bert", "quant=nf4", "train.max_steps=1"]).trial)
r = run_trial(compose([*tiny, *sys.argv[1:]]).trial)
print(json.dumps({"status": r.status.value, "error": r.error, "peak": r.metrics.get("peak_memory_mb"), "meta": r.meta.get("memory_kind")}))
"""


def _peak_in_fresh_process(*overrides: str) -> dict:
    """Peak memory of one trial in its own process: an earlier trial's freed heap cannot skew the delta."""
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _MEASURE, *overrides], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_qlora_nf4_trains_and_uses_less_memory():
    # big enough that the block weights dominate the resident-memory delta (~150 MB fp32 vs ~19 MB nf4)
    size = ["model=tiny_llama", "model.hidden_size=768", "model.intermediate_size=3072", "model.num_layers=4",
            "model.num_heads=12", "lora=qv", "train.save_adapter=false", "train.max_steps=2", "train.eval_every=0",
            "data.eval_size=8", "train.latency_iters=1"]
    q = _peak_in_fresh_process(*size, "quant=nf4")
    f = _peak_in_fresh_process(*size, "quant=none")
    assert q["status"] == "COMPLETE", q["error"]
    assert f["status"] == "COMPLETE", f["error"]
    assert q["peak"] < f["peak"], (q["peak"], f["peak"])
    assert q["meta"] == "cpu_rss_delta"


@pytest.mark.parametrize("fault, reason", [("oom", "OOM"), ("nan", "NaN loss")])
def test_faults_become_failed_status(compose_trial, fault, reason, tmp_path):
    res = run_trial(compose_trial("model=tiny_bert"), fault=fault, output_dir=tmp_path)
    assert res.status is TrialStatus.FAILED
    assert res.error.startswith(reason), res.error
    assert (tmp_path / "error.txt").exists()


def test_unknown_target_fails_before_model_build(compose_trial):
    res = run_trial(compose_trial("model=tiny_bert", "lora.targets=[query,nonexistent]"))
    assert res.status is TrialStatus.FAILED
    assert res.error.startswith("config: lora.targets: unknown module name(s) 'nonexistent'")
    assert "trainable_params" not in res.metrics


def test_budget_prunes_before_training(compose_trial):
    res = run_trial(compose_trial("model=tiny_bert", "lora=all_linear", "lora.r=16"), max_trainable_params=100)
    assert res.status is TrialStatus.PRUNED and "over budget" in res.error
    assert "train_steps" not in res.metrics


def test_reporter_can_prune(compose_trial):
    class StopAtFirst:
        def __init__(self):
            self.calls = []

        def report(self, step, m):
            self.calls.append(step)
            return True

    rep = StopAtFirst()
    res = run_trial(compose_trial("model=tiny_bert"), reporter=rep)
    assert res.status is TrialStatus.PRUNED and rep.calls == [3]
    assert res.metrics["train_steps"] == 3
