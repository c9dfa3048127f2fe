"""Architecture files (config.json, kilobytes, no weights) of hub models too large to download for a plan.

`python -m sweep.plan` and the module inventory (preflight, target presets) read a model's shape from here when its
hub id is listed, so an 8B model is planned and checked offline. Training still goes through the hub
(`model.source=hub`): the weights, the tokenizer and the hub's own config.json come from there.

Each file holds the published architecture values of the model's hub config.json (hidden_size, intermediate_size,
num_hidden_layers, num_attention_heads, num_key_value_heads, vocab_size, max_position_embeddings, rope settings,
tie_word_embeddings, torch_dtype); tests/test_plan.py checks the parameter count each one builds on the meta device
against the model card's (8.03B, 7.62B, 7.25B).
"""

from __future__ import annotations

from pathlib import Path

# hub id -> folder under this package
SHIPPED: dict[str, str] = {
    "meta-llama/Llama-3.1-8B": "llama3_1_8b",
    "Qwen/Qwen2.5-7B": "qwen2_5_7b",
    "mistralai/Mistral-7B-v0.3": "mistral_7b_v0_3",
}


def shipped_config_dir(hub_id: str | None) -> Path | None:
    """The folder holding the shipped config.json of `hub_id`, or None when it is not shipped."""
    name = SHIPPED.get(hub_id or "")
    if name is None:
        return None
    folder = Path(__file__).resolve().parent / name
    return folder if (folder / "config.json").is_file() else None
