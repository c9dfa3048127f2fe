"""Failures of a trial as statuses: classifying an exception into a one-line reason, and the test hooks that
inject faults (a CUDA OOM, a NaN loss, a SIGKILL, a full disk) into a real trial."""

from __future__ import annotations

import errno

from sweep.config.errors import ConfigError
from sweep.text import one_line

MODEL_FAULTS = ("oom", "nan", "kill")  # injected into the first training forward
DISK_FULL = "disk_full"  # injected when the adapter is written


def is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)) or "out of memory" in str(exc).lower()


def is_disk_full(exc: BaseException) -> bool:
    return (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "No space left on device" in str(exc)


def failure_reason(exc: BaseException) -> str:
    """One line saying why a trial failed: `config: ...`, `OOM: ...`, `disk full: ...`, `NaN loss: ...`, or the type."""
    if isinstance(exc, ConfigError):
        return "config: " + "; ".join(exc.problems)
    if is_oom(exc):
        return f"OOM: {one_line(exc)}"
    if is_disk_full(exc):
        return f"disk full: {one_line(exc)}"
    if type(exc).__name__ == "NonFiniteLoss":
        return f"NaN loss: {one_line(exc)}"
    return f"{type(exc).__name__}: {one_line(exc)}"


def inject(model, fault: str | None) -> None:
    """Test hook: the first training forward raises a CUDA OOM, yields NaN, or SIGKILLs the process."""
    if fault not in MODEL_FAULTS:
        return
    import torch

    def hook(_module, _inputs, output):
        if not _module.training:
            return output
        if fault == "oom":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected fault)")
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
