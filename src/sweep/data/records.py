"""The loaded data of one trial, and the one error type of the data layer."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

TASKS = ("classification", "instruction")


class DataError(ValueError):
    """A data problem; the message is one line `data.<key>: problem (fix)`."""

    def __init__(self, message: str):
        message = " ".join(str(message).split())  # always one line
        self.key = message.split(":", 1)[0]  # the config key the message starts with
        super().__init__(message)


@dataclass(frozen=True)
class Records:
    task: str  # "classification" | "instruction"
    train: list[dict]  # classification: {"text", "label": int}; instruction: {"instruction", "input", "output"}
    eval: list[dict]  # same record shape as train
    label_names: list[str] | None  # classification: names indexed by label id; instruction: None
    fingerprint: str  # 16 hex chars over (task, label_names, train, eval)


def fingerprint(task: str, label_names: list[str] | None, train: list[dict], eval: list[dict]) -> str:
    """sha256 (first 16 hex chars) of the canonical JSON of the records."""
    blob = json.dumps([task, label_names, train, eval], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]
