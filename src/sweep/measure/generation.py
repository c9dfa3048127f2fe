"""Greedy decoding latency per generated token, one request at a time (batch 1).

Each timed call generates exactly `new_tokens` tokens (the end token is suppressed
until then, so every call does the same work) from one eval prompt; the figure is
the call's wall time divided by `new_tokens`, prompt prefill included. Prompts are
taken in eval order, so unmerged and merged models decode the same requests.
"""

from __future__ import annotations

from sweep.measure.latency import Latency, time_batches


def per_token_latency(model, feats: list[dict], *, pad_id: int, device: str, new_tokens: int, warmup: int,
                      iters: int) -> Latency:
    """p50/p95 of ms per generated token over `iters` single-prompt greedy generations (after `warmup`)."""
    import torch

    from sweep.train.encode import left_padded_prompts

    calls = iter(range(10**9))

    def one() -> None:
        f = feats[next(calls) % len(feats)]
        ids, mask = left_padded_prompts([f], pad_id, device)
        with torch.no_grad():
            model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                           do_sample=False, pad_token_id=pad_id)

    lat = time_batches(one, device=device, warmup=warmup, iters=iters)
    per = [ms / new_tokens for ms in lat.samples_ms]
    return Latency(lat.p50_ms / new_tokens, lat.p95_ms / new_tokens, per)
