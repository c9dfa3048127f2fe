"""Inference measurements on one eval batch: latency with an interval for its median, the merge check,
and greedy generation throughput for causal LMs.

A trial times its model with the adapter active (unmerged): that is what an adapter adds. A merged
adapter computes exactly what the base model computes (same layers, same shapes), so merged
latency is the base model's: the study's baseline measures it once per (model, quant, batch).
"""

from __future__ import annotations

from sweep.measure.latency import time_calls


def eval_batch(prepared, batch_size: int, device: str) -> dict:
    """The first eval batch as model inputs (no labels)."""
    from sweep.train.encode import Collator

    collate = Collator(prepared.tok, causal=prepared.task != "classification", counting=False)
    return {k: v.to(device) for k, v in collate(prepared.eval_feats[:batch_size]).items() if k != "labels"}


def latency_metrics(model, batch: dict, train_cfg, device: str, prefix: str) -> dict[str, float]:
    """`<prefix>_p50_ms` (+ interval bounds) and `<prefix>_p95_ms` of one forward pass on `batch`."""
    import torch

    with torch.no_grad():
        lat = time_calls(lambda: model(**batch).logits, device=device, warmup=train_cfg.latency_warmup,
                         min_iters=train_cfg.latency_min_iters, max_iters=train_cfg.latency_max_iters,
                         rel_ci=train_cfg.latency_rel_ci)
    return lat.metrics(prefix)


def merge_check(model, batch: dict):
    """merge_and_unload the adapter; (the merged model, max |logits difference| merged vs unmerged). A 4-bit base
    repacked for CPU inference is unpacked first (merging needs bitsandbytes' own layout, see
    loader.unpack_cpu_inference), and both sides are computed on it."""
    import torch

    from sweep.models.loader import unpack_cpu_inference

    unpack_cpu_inference(model)
    with torch.no_grad():
        before = model(**batch).logits.float()
        merged = model.merge_and_unload()
        merged.eval()
        after = merged(**batch).logits.float()
    return merged, float((before - after).abs().max())


def generation_metrics(model, prepared, train_cfg, max_new_tokens: int, device: str, per_token: str) -> dict[str, float]:
    """Causal LM: greedy generation throughput on the first eval batch (tokens/s), and the latency per generated
    token of one request as `<per_token>_ms` (with its interval)."""
    from sweep.measure.generation import per_token_latency
    from sweep.train.evaluate import generate

    _, n_tokens, seconds = generate(model, prepared.eval_feats[:train_cfg.eval_batch_size], tok=prepared.tok, device=device,
                                    max_new_tokens=max_new_tokens, eos_id=prepared.eos)
    lat = per_token_latency(model, prepared.eval_feats, pad_id=prepared.tok.pad_token_id, device=device,
                            new_tokens=max_new_tokens, train_cfg=train_cfg)
    return {"generation_tokens_per_s": n_tokens / seconds, f"{per_token}_ms": lat.p50_ms,
            f"{per_token}_ms_ci_low": lat.ci_low_ms, f"{per_token}_ms_ci_high": lat.ci_high_ms}
