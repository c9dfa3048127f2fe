"""Optimizer state of the trainable tensors, per optimizer, in bytes: what each optimizer allocates, read from its
code (torch 2.13, transformers 5.25, bitsandbytes 0.50) and checked against a real optimizer's state after one step
(tests/test_plan.py).

  adamw_torch_fused   exp_avg and exp_avg_sq like the parameter (fp32 for PEFT's fp32 adapters), plus a 4-byte
                      `step` tensor per parameter on the device
  adamw_torch         the same two states; `step` stays on the host (torch keeps it on the CPU unless fused or
                      capturable: off a CUDA device's books, on a CPU's). On CUDA it runs the foreach kernels, whose
                      temporaries during step() are up to about two states' worth (counted as step_temp)
  adamw_8bit          bitsandbytes AdamW(optim_bits=8): tensors with >= 4096 elements (min_8bit_size) keep two
  paged_adamw_8bit    uint8 states (1 byte each) plus two fp32 absmax scales per 256-element block; smaller tensors
                      (a rank-8 LoRA A of a 384-wide layer has 3072) keep two fp32 states; two 256-entry fp32 code
                      tables per optimizer
  paged_adamw_32bit   two fp32 states whatever the parameter's dtype
  adafactor           transformers' Adafactor as the Trainer builds it (beta1=None: no first moment): a matrix keeps
                      factored second moments, one per row and one per column (rows + cols elements, the
                      gradient's dtype); a vector keeps a full one; plus a 0-d RMS tensor per parameter

Paged optimizers (bitsandbytes, CUDA only): a state buffer of >= 100,000 elements lives in CUDA unified memory,
allocated outside PyTorch's allocator (torch.cuda.max_memory_allocated does not see it) and evicted to host memory
under pressure. It is reported as `paged_bytes`, counted in the total as resident (the conservative reading: it
only spills when the card is full). On a CPU the paged optimizers fall back to ordinary buffers (bitsandbytes
warns), so there `paged_bytes` is 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sweep.config.schema import OPTIMIZERS

BNB_MIN_8BIT_SIZE = 4096  # bitsandbytes Optimizer8bit: smaller tensors keep 32-bit states
BNB_BLOCK = 256  # bitsandbytes blockwise 8-bit states: one fp32 absmax per block
BNB_QMAP = 2 * 256 * 4  # the signed and unsigned 8-bit code tables, once per optimizer
BNB_PAGED_MIN = 100_000  # bitsandbytes get_state_buffer: smaller buffers are ordinary tensors even when paged
STEP_BYTES = 4  # a float32 step counter


@dataclass(frozen=True)
class OptimizerState:
    """Bytes an optimizer holds for a set of trainable tensors."""

    device_bytes: int  # inside PyTorch's allocator
    paged_bytes: int  # bitsandbytes paged buffers: CUDA unified memory, outside the allocator, may spill to host
    step_temp_bytes: int  # transient extra during optimizer.step()

    @property
    def total_bytes(self) -> int:
        return self.device_bytes + self.paged_bytes


def state_bytes(optimizer: str, trainable: tuple[tuple[tuple[int, ...], int], ...], *, cuda: bool = True) -> OptimizerState:
    """Optimizer state of `trainable` ((shape, element size) per tensor) for the transformers `optim` name.
    `cuda`: where the optimizer runs (paged buffers exist on CUDA only; the fused step counter lives on the device)."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r} (one of {', '.join(OPTIMIZERS)})")
    device = paged = temp = 0
    paged_kind = optimizer.startswith("paged_") and cuda
    for shape, elem in trainable:
        n = math.prod(shape)
        if optimizer in ("adamw_torch_fused", "adamw_torch"):
            device += 2 * n * elem + (STEP_BYTES if optimizer == "adamw_torch_fused" or not cuda else 0)
            if optimizer == "adamw_torch" and cuda:
                temp += 2 * n * elem
        elif optimizer in ("adamw_8bit", "paged_adamw_8bit"):
            if n < BNB_MIN_8BIT_SIZE:
                buf, scales = 2 * n * 4, 0
            else:
                buf, scales = 2 * n, 2 * math.ceil(n / BNB_BLOCK) * 4
            if paged_kind and n >= BNB_PAGED_MIN:
                paged += buf
            else:
                device += buf
            device += scales
        elif optimizer == "paged_adamw_32bit":
            if paged_kind and n >= BNB_PAGED_MIN:
                paged += 2 * n * 4
            else:
                device += 2 * n * 4
        else:  # adafactor
            if len(shape) >= 2:
                rows, cols = math.prod(shape[:-1]), math.prod(shape[:-2]) * shape[-1]
                device += (rows + cols) * elem
            else:
                device += n * elem
            device += 4  # RMS
            temp = max(temp, 3 * n * 4)  # the update and the fp32 copies of one parameter at a time
    if optimizer in ("adamw_8bit", "paged_adamw_8bit") and any(math.prod(s) >= BNB_MIN_8BIT_SIZE for s, _ in trainable):
        device += BNB_QMAP
    return OptimizerState(device, paged, temp)
