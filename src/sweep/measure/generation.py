"""Greedy decoding latency per generated token, one request at a time (batch 1).

Each timed call generates exactly `new_tokens` tokens (the end token is suppressed
until then, so every call does the same work) from one eval prompt; the figure is
the call's wall time divided by `new_tokens`, prompt prefill included. Prompts are
taken in eval order, so the trial (adapter active) and the baseline (the base model,
i.e. any merged adapter) decode the same requests. Timing stops as in latency.py.
"""

from __future__ import annotations

from sweep.measure.latency import Latency, time_calls


def per_token_latency(model, feats: list[dict], *, pad_id: int, device: str, new_tokens: int, train_cfg) -> Latency:
    """Median ms per generated token (with its interval) over single-prompt greedy generations."""
    import torch

    from sweep.train.encode import left_padded_prompts

    calls = iter(range(10**9))

    def one() -> None:
        f = feats[next(calls) % len(feats)]
        ids, mask = left_padded_prompts([f], pad_id, device)
        with torch.no_grad():
            model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                           do_sample=False, pad_token_id=pad_id)

    lat = time_calls(one, device=device, warmup=train_cfg.latency_warmup, min_iters=train_cfg.latency_min_iters,
                     max_iters=train_cfg.latency_max_iters, rel_ci=train_cfg.latency_rel_ci)
    return Latency(*(x / new_tokens for x in (lat.p50_ms, lat.p95_ms, lat.ci_low_ms, lat.ci_high_ms)),
                   [ms / new_tokens for ms in lat.samples_ms])
