"""Parameter counts of an adapted model (4-bit weights at their logical size)."""

from __future__ import annotations

import math


def count_params(model) -> dict[str, float]:
    """trainable, total and adapter (LoRA/DoRA/AdaLoRA) parameters, and the trainable ratio."""
    trainable = total = adapter = 0
    for name, p in model.named_parameters():
        qs = getattr(p, "quant_state", None)
        n = math.prod(qs.shape) if qs is not None else p.numel()
        total += n
        if p.requires_grad:
            trainable += n
        if "lora_" in name:
            adapter += n
    return {"trainable_params": float(trainable), "total_params": float(total), "adapter_params": float(adapter),
            "trainable_ratio": trainable / total if total else 0.0}
