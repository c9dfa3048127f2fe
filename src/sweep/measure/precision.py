"""One explicit precision for every measurement of a trial: the config's `train.precision`.

Training under `train.precision=bf16|fp16` runs in autocast, which the Trainer (accelerate) switches on by wrapping
the model's forward, and nothing switches it off: left alone, the final evaluation and the unmerged latency ran in
bf16 while the merged model, the baseline and generation ran in fp32, so merged-vs-unmerged latency,
`merge_max_abs_diff` and the multitask re-evaluation compared two precisions. Here the wrapper is taken off once
training ends (`unwrap`), and every measurement (evaluations, latency, generation, the merge check, the baseline,
the multitask re-evaluation) runs inside `measuring(precision, device)`: autocast at the config's precision, or
plain fp32. meta.json's `measure_precision` says which.
"""

from __future__ import annotations

import contextlib

AUTOCAST = {"bf16": "bfloat16", "fp16": "float16"}  # train.precision -> torch dtype name; fp32: no autocast


def measure_precision(precision: str) -> str:
    """What meta.json records: the precision every measurement ran at."""
    return precision if precision in AUTOCAST else "fp32"


def measuring(precision: str, device: str):
    """The context every measurement of a trial or baseline runs in."""
    name = AUTOCAST.get(precision)
    if name is None:
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type="cuda" if str(device).startswith("cuda") else "cpu", dtype=getattr(torch, name))


def unwrap(model):
    """Take the Trainer's autocast wrapper off `model`'s forward (accelerate's own unwrapping, public API): the
    model runs at whatever precision its caller's context sets from now on."""
    from accelerate.utils import extract_model_from_parallel

    return extract_model_from_parallel(model, keep_fp32_wrapper=False)
