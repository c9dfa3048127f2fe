"""Text helpers shared by every layer (no imports beyond the standard library)."""

from __future__ import annotations


def one_line(value: object, limit: int = 500) -> str:
    """An exception or text squeezed onto one line (whitespace runs -> one space), cut at `limit` characters;
    an exception with no message gives its type name."""
    text = " ".join(str(value).split())[:limit]
    if not text and isinstance(value, BaseException):
        return type(value).__name__
    return text
