"""A study's baseline: the base model without an adapter, measured once per (model, quant, data, eval batch).

It answers two questions the trials cannot answer for themselves:
  * what fine-tuning gains: the base model's own score (zero-shot for instruction tasks; for
    classification a freshly initialised, untrained head, i.e. about chance) is the ROI baseline;
  * what a merged adapter costs at inference: nothing beyond the base model, whose latency is
    therefore the merged latency of every trial sharing this baseline.
"""

from __future__ import annotations

import hashlib
import json
import time

from sweep import faults
from sweep.config.hashing import canonical_json
from sweep.config.schema import TrialConfig
from sweep.measure.memory import release
from sweep.results import TrialResult, TrialStatus

# the trial keys that decide the baseline's measurements (everything else is about the adapter and its training)
KEY_FIELDS = {"model": None, "quant": None, "data": None,
              "train": ("seed", "eval_batch_size", "precision", "latency_warmup", "latency_min_iters", "latency_max_iters",
                        "latency_rel_ci")}


def baseline_key(cfg: TrialConfig | dict) -> str:
    """12 hex characters naming the baseline a trial config shares with others."""
    d = cfg if isinstance(cfg, dict) else cfg.to_dict()
    part = {g: (d[g] if keys is None else {k: d[g][k] for k in keys}) for g, keys in KEY_FIELDS.items()}
    return hashlib.sha256(canonical_json(part).encode()).hexdigest()[:12]


def run_baseline(cfg: TrialConfig, *, placement: dict[str, str] | None = None) -> TrialResult:
    """Evaluate and time the base model of `cfg` (no adapter); never raises for its own failure."""
    t0 = time.perf_counter()
    try:
        metrics, meta = _measure(cfg, placement or {})
        result = TrialResult(TrialStatus.COMPLETE, metrics, None, meta=meta)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - a failed baseline is reported, the sweep goes on
        result = TrialResult(TrialStatus.FAILED, {}, faults.failure_reason(exc))
    finally:  # the base model's cached CUDA blocks would count as the worker's memory after it
        release()
    result.config_hash = baseline_key(cfg)
    result.duration_s = time.perf_counter() - t0
    return result


def _measure(cfg: TrialConfig, placement: dict[str, str]) -> tuple[dict[str, float], dict]:
    import torch
    from transformers import set_seed

    from sweep.measure import inference
    from sweep.measure import precision as P
    from sweep.measure.gpu_share import GpuShare
    from sweep.models.loader import build_model, set_cpu_inference_packing
    from sweep.train.evaluate import evaluate
    from sweep.train.prepare import prepare
    from sweep.trial import resolve_device

    t, d = cfg.train, cfg.data
    device = resolve_device(t.device)
    if t.threads:
        torch.set_num_threads(t.threads)
    set_seed(t.seed)
    prep = prepare(cfg, device, placement)
    share = GpuShare.of(placement)
    with share.working():
        model = build_model(cfg.model, task=d.task, num_labels=prep.num_labels, quant=cfg.quant, seed=t.seed,
                            device=device)
        model.eval()
        if cfg.quant.enabled:
            set_cpu_inference_packing(model, True)
        with P.measuring(t.precision, device):  # the trials' precision: their merged latency is this one
            metrics = evaluate(model, prep.eval_feats, task=d.task, tok=prep.tok, answers=prep.answers,
                               batch_size=t.eval_batch_size, device=device, max_new_tokens=d.max_new_tokens,
                               eos_id=prep.eos)
    batch = inference.eval_batch(prep, t.eval_batch_size, device)
    with share.timing(), P.measuring(t.precision, device):  # on a shared GPU, alone on it while timing
        metrics.update(inference.latency_metrics(model, batch, t, device, "merged_latency"))
        if d.task != "classification":
            metrics.update(inference.generation_metrics(model, prep, t, d.max_new_tokens, device, "merged_latency_per_token"))
    meta = {**prep.meta, **share.meta(), "baseline_key": baseline_key(cfg), "measure_precision": P.measure_precision(t.precision),
            "meaning": ("zero-shot score of the base model" if d.task != "classification" else
                        "the base model with a freshly initialised, untrained classification head (about chance)")}
    return metrics, json.loads(json.dumps(meta, default=str))
