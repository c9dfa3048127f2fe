"""Target presets resolved per architecture, and explicit target lists checked against the model.

A preset (`qv`, `qk`, `qkv`, `qkvo`, `mlp`, `all_linear`) becomes the exact list of
full module names of the model; an explicit name must match at least one linear
module by PEFT's rule (the full name, or a suffix after a dot), else it is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sweep.config.errors import ConfigError

# Module-name patterns (regex searched in the full name) per architecture family.
_BERT = {
    "q": r"attention\.self\.query$",
    "k": r"attention\.self\.key$",
    "v": r"attention\.self\.value$",
    "o": r"attention\.output\.dense$",
    "mlp": r"(intermediate\.dense|layer\.\d+\.output\.dense)$",
}
_LLAMA = {
    "q": r"self_attn\.q_proj$",
    "k": r"self_attn\.k_proj$",
    "v": r"self_attn\.v_proj$",
    "o": r"self_attn\.o_proj$",
    "mlp": r"mlp\.(gate_proj|up_proj|down_proj)$",
}
_DISTILBERT = {
    "q": r"attention\.q_lin$",
    "k": r"attention\.k_lin$",
    "v": r"attention\.v_lin$",
    "o": r"attention\.out_lin$",
    "mlp": r"ffn\.lin[12]$",
}
_OPT = {
    "q": r"self_attn\.q_proj$",
    "k": r"self_attn\.k_proj$",
    "v": r"self_attn\.v_proj$",
    "o": r"self_attn\.out_proj$",
    "mlp": r"\.fc[12]$",
}
_PHI = {
    "q": r"self_attn\.q_proj$",
    "k": r"self_attn\.k_proj$",
    "v": r"self_attn\.v_proj$",
    "o": r"self_attn\.dense$",
    "mlp": r"mlp\.fc[12]$",
}

FAMILIES: dict[str, dict[str, str]] = {
    "bert": _BERT,
    "roberta": _BERT,
    "xlm-roberta": _BERT,
    "electra": _BERT,
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "qwen2": _LLAMA,
    "qwen3": _LLAMA,
    "gemma": _LLAMA,
    "gemma2": _LLAMA,
    "distilbert": _DISTILBERT,
    "opt": _OPT,
    "phi": _PHI,
}

PRESET_PARTS = {
    "qv": ("q", "v"),
    "qk": ("q", "k"),
    "qkv": ("q", "k", "v"),
    "qkvo": ("q", "k", "v", "o"),
    "mlp": ("mlp",),
}


@dataclass(frozen=True)
class LinearModule:
    name: str  # full module name in the base model
    in_features: int
    out_features: int
    layer: int | None  # transformer block index, None outside the blocks


@dataclass(frozen=True)
class Inventory:
    """The linear modules of a model, as seen before any weights are loaded."""

    model_type: str
    linears: tuple[LinearModule, ...]
    num_layers: int

    @property
    def block_linears(self) -> tuple[LinearModule, ...]:
        return tuple(m for m in self.linears if m.layer is not None)

    def leaf_names(self) -> list[str]:
        return sorted({m.name.rsplit(".", 1)[-1] for m in self.block_linears})


_LAYER_RE = re.compile(r"\.(?:layer|layers|h|blocks|block)\.(\d+)\.")


def layer_index(name: str) -> int | None:
    m = _LAYER_RE.search(f".{name}.")
    return int(m.group(1)) if m else None


def _matches(name: str, target: str) -> bool:
    """PEFT's rule for a target name: the full name, or a dotted suffix of it."""
    return name == target or name.endswith("." + target)


def resolve_targets(targets: str | list[str], inv: Inventory) -> list[str]:
    """Full names of the modules that `targets` selects; a one-line ConfigError if none or unknown."""
    blocks = inv.block_linears
    if isinstance(targets, str):
        if targets == "all_linear":
            names = [m.name for m in blocks]
        else:
            family = FAMILIES.get(inv.model_type)
            if family is None:
                raise ConfigError([
                    f"lora.targets: no preset table for model type {inv.model_type!r}; pass an explicit list, "
                    f"e.g. lora.targets=[{','.join(inv.leaf_names()[:2])}] (modules: {', '.join(inv.leaf_names())})"
                ])
            pattern = re.compile("|".join(f"(?:{family[p]})" for p in PRESET_PARTS[targets]))
            names = [m.name for m in blocks if pattern.search(m.name)]
        if not names:
            raise ConfigError([f"lora.targets: preset {targets!r} selects no module of this {inv.model_type} model"])
        return names
    names: list[str] = []
    unknown = [t for t in targets if not any(_matches(m.name, t) for m in inv.linears)]
    if unknown:
        raise ConfigError([
            f"lora.targets: unknown module name(s) {', '.join(repr(u) for u in unknown)} for this {inv.model_type} model "
            f"(linear modules: {', '.join(inv.leaf_names())}; or use a preset: qv, qkvo, mlp, all_linear)"
        ])
    for m in inv.linears:
        if any(_matches(m.name, t) for t in targets):
            names.append(m.name)
    return names
