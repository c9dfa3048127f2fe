"""Retry a call while another process is racing us (sqlite locks, schema creation on first use)."""

from __future__ import annotations

import time
from typing import Callable, Sequence, TypeVar

T = TypeVar("T")

STARTUP_DELAYS = (0.5, 1.0, 1.5, 2.0, 2.5)  # seconds: while another process creates a store's schema


def retry_while(fn: Callable[[], T], *, markers: Sequence[str], delays: Sequence[float], casefold: bool = False) -> T:
    """Call `fn`; if it raises with one of `markers` in its message, sleep the next delay and call again.
    Any other error, or a racing error after the last delay, propagates."""
    for delay in (*delays, None):
        try:
            return fn()
        except Exception as exc:
            text = " ".join(str(exc).split())
            if casefold:
                text = text.lower()
            if delay is None or not any(m in text for m in markers):
                raise
            time.sleep(delay)
    raise AssertionError("unreachable")
