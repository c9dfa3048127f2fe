"""What the built-in classification generators share: unique texts, then seeded label noise."""

from __future__ import annotations

import random
from typing import Callable


def unique_rows(rng: random.Random, make: Callable[[random.Random], tuple[str, str, str]], count: int,
                labels: tuple[str, ...] | list[str], noise: float) -> list[dict]:
    """`count` rows {"text", "label", "family"} from `make(rng)`, each text once; a share `noise` of the labels
    replaced by another label at random (family "noise"). Draws from `rng` only, in a fixed order, so the same
    seed gives the same rows byte for byte."""
    seen: set[str] = set()  # membership only, never iterated
    rows: list[dict] = []
    while len(rows) < count:
        text, label, family = make(rng)
        if text in seen:
            continue
        seen.add(text)
        if rng.random() < noise:
            label = rng.choice([n for n in labels if n != label])
            family = "noise"
        rows.append({"text": text, "label": label, "family": family})
    return rows
