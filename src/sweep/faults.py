"""Failures of a trial as statuses: classifying an exception into a one-line reason, and the test hooks that
inject faults (a CUDA OOM, a NaN loss, a SIGKILL, a full disk) into a real trial."""

from __future__ import annotations

import errno

from sweep.config.errors import ConfigError
from sweep.text import one_line

MODEL_FAULTS = ("oom", "nan", "kill", "cuda_assert", "device_assert")  # injected into the first training forward
DISK_FULL = "disk_full"  # injected when the adapter is written


def is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)) or "out of memory" in str(exc).lower()


OOM = "OOM"  # the reason's prefix for an out-of-memory failure
CUDA_BROKEN = "CUDA broken"  # the reason's prefix for an error that leaves the process's CUDA context unusable
# CUDA errors that are sticky: once raised, every later kernel launch in the process fails the same way, so the
# worker must be replaced (an OOM is not one of them: the allocator recovers and the next trial may fit)
STICKY_CUDA = ("device-side assert triggered", "illegal memory access", "unspecified launch failure",
               "misaligned address", "illegal instruction", "uncorrectable ecc error", "cublas_status_execution_failed",
               "cuda error: unknown error", "an illegal instruction was encountered", "hardware stack error",
               "cudaerrorlaunchfailure", "device kernel image is invalid")


def is_broken_cuda(exc: BaseException) -> bool:
    text = str(exc).lower()
    return not is_oom(exc) and any(m in text for m in STICKY_CUDA)


def broke_cuda(reason: str | None) -> bool:
    """Whether a trial's failure reason says its worker's CUDA context is broken (its worker must be replaced)."""
    return bool(reason) and reason.startswith(CUDA_BROKEN + ":")


def ran_out_of_memory(reason: str | None) -> bool:
    """Whether a trial's failure reason says it ran out of memory (`OOM: ...`)."""
    return bool(reason) and reason.startswith(OOM + ":")


def is_disk_full(exc: BaseException) -> bool:
    return (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "No space left on device" in str(exc)


def failure_reason(exc: BaseException) -> str:
    """One line saying why a trial failed: `config: ...`, `OOM: ...`, `CUDA broken: ...` (the worker is replaced),
    `disk full: ...`, `NaN loss: ...`, or the type."""
    if isinstance(exc, ConfigError):
        return "config: " + "; ".join(exc.problems)
    if is_broken_cuda(exc):
        return f"{CUDA_BROKEN}: {one_line(exc)} (the worker's CUDA context is unusable: it is replaced)"
    if is_oom(exc):
        return f"{OOM}: {one_line(exc)}"
    if is_disk_full(exc):
        return f"disk full: {one_line(exc)}"
    if type(exc).__name__ == "NonFiniteLoss":
        return f"NaN loss: {one_line(exc)}"
    return f"{type(exc).__name__}: {one_line(exc)}"


def inject(model, fault: str | None) -> None:
    """Test hook: the first training forward raises a CUDA OOM or a device-side assert, yields NaN, or SIGKILLs the
    process."""
    if fault not in MODEL_FAULTS:
        return
    import torch

    def hook(_module, _inputs, output):
        if not _module.training:
            return output
        if fault == "oom":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected fault)")
        if fault == "cuda_assert":  # what torch raises after a kernel's assert (an index out of range on the GPU)
            raise RuntimeError("CUDA error: device-side assert triggered (injected fault)")
        if fault == "device_assert":  # a real one on a GPU: an out-of-range gather trips a kernel assert
            x = torch.zeros(4, device=output.logits.device)
            x[torch.tensor([64], device=x.device)].sum().item()
        if fault == "kill":
            import os
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        output.logits = output.logits * float("nan")
        if getattr(output, "loss", None) is not None:
            output.loss = output.loss * float("nan")
        return output

    model.register_forward_hook(hook)


def check_disk(fault: str | None, path) -> None:
    """Test hook: the disk fills up while `path` is written."""
    if fault == DISK_FULL:
        raise OSError(errno.ENOSPC, "No space left on device (injected fault)", str(path))
