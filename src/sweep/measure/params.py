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


def weights_mb(model) -> float:
    """MiB the model's weights hold as stored: parameters and buffers (a tied tensor once), a 4-bit weight at its
    packed size plus its quantization state (block scales, the nested scales of double quantization, codebooks).
    Exact and machine-independent, unlike a peak memory reading: this is what quantization saves on the weights.
    Also counts a model on the meta device (sweep.plan): a shared tensor is recognised by its storage, not by its
    address (every meta tensor has address 0)."""
    seen: set[tuple[int, int, int]] = set()
    alive: list = []  # the storages seen, kept referenced so that their ids stay unique while counting
    total = 0

    def add(t) -> None:
        nonlocal total
        if t is None or not hasattr(t, "untyped_storage") or t.numel() == 0:
            return
        st = t.untyped_storage()
        key = (id(st), t.storage_offset(), t.numel())
        if key not in seen:
            seen.add(key)
            alive.append(st)
            total += t.numel() * t.element_size()

    for p in model.parameters():
        add(p.data)
        qs = getattr(p, "quant_state", None)
        if qs is not None:
            add(qs.absmax)
            add(qs.code)
            if getattr(qs, "nested", False):
                add(qs.state2.absmax)
                add(qs.state2.code)
                add(qs.offset)
    for b in model.buffers():
        add(b)
    return total / 2**20
