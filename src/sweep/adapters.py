"""PEFT adapter configs from a LoraConfig: presets resolved, layer-wise ranks compiled.

Layer-wise schedules (depth bands, one rank per layer, or per module type) are
compiled into PEFT `rank_pattern` / `alpha_pattern` keyed by escaped full module
names, so each entry hits exactly one module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sweep.config.errors import ConfigError
from sweep.config.schema import LoraConfig
from sweep.models.targets import Inventory, LinearModule, resolve_targets


@dataclass(frozen=True)
class AdapterPlan:
    """Which modules get an adapter, with which rank and alpha."""

    modules: tuple[LinearModule, ...]
    ranks: dict[str, int]  # full module name -> rank
    alphas: dict[str, float]  # full module name -> alpha

    def lora_params(self, use_dora: bool = False) -> int:
        """Exact LoRA parameter count: r * (in + out) per module (+ out for DoRA's magnitude)."""
        total = 0
        for m in self.modules:
            total += self.ranks[m.name] * (m.in_features + m.out_features)
            if use_dora:
                total += m.out_features
        return total


def band_of(layer: int, num_layers: int, num_bands: int) -> int:
    """Depth band of `layer` when `num_layers` are split into `num_bands` contiguous, even bands."""
    return min(layer * num_bands // num_layers, num_bands - 1)


def plan(lora: LoraConfig, inv: Inventory) -> AdapterPlan:
    names = set(resolve_targets(lora.targets, inv))
    modules = tuple(m for m in inv.linears if m.name in names)
    ranks: dict[str, int] = {}
    if lora.layer_ranks and len(lora.layer_ranks) != inv.num_layers:
        raise ConfigError([f"lora.layer_ranks: has {len(lora.layer_ranks)} entries, the model has {inv.num_layers} layers (give one rank per layer)"])
    if lora.band_ranks and len(lora.band_ranks) > max(inv.num_layers, 1):
        raise ConfigError([f"lora.band_ranks: {len(lora.band_ranks)} bands for {inv.num_layers} layers (use at most one band per layer)"])
    if lora.module_ranks:
        leaves = {m.name.rsplit(".", 1)[-1] for m in modules} | {".".join(m.name.split(".")[-2:]) for m in modules}
        unknown = [k for k in lora.module_ranks if k not in leaves]
        if unknown:
            raise ConfigError([f"lora.module_ranks: {', '.join(unknown)} not among the targeted modules ({', '.join(sorted(leaves))})"])
    for m in modules:
        r = lora.r
        if lora.layer_ranks and m.layer is not None:
            r = lora.layer_ranks[m.layer]
        elif lora.band_ranks and m.layer is not None:
            r = lora.band_ranks[band_of(m.layer, inv.num_layers, len(lora.band_ranks))]
        elif lora.module_ranks:
            for key, kr in lora.module_ranks.items():
                if m.name == key or m.name.endswith("." + key):
                    r = kr
        ranks[m.name] = r
    alphas = {n: lora.alpha_for(r) for n, r in ranks.items()}
    return AdapterPlan(modules=modules, ranks=ranks, alphas=alphas)


def peft_config(lora: LoraConfig, p: AdapterPlan, *, task: str, total_steps: int):
    """The PEFT config object (LoraConfig or AdaLoraConfig) for a plan."""
    from peft import AdaLoraConfig, TaskType
    from peft import LoraConfig as PeftLoraConfig

    task_type = TaskType.SEQ_CLS if task == "classification" else TaskType.CAUSAL_LM
    targets = [m.name for m in p.modules]
    base_alpha = lora.alpha_for(lora.r)
    if lora.method == "adalora":
        tinit = int(lora.adalora_tinit * total_steps)
        tfinal = int(lora.adalora_tfinal * total_steps)
        return AdaLoraConfig(
            task_type=task_type,
            target_modules=targets,
            init_r=lora.adalora_init_r,
            target_r=lora.r,
            lora_alpha=base_alpha,
            lora_dropout=lora.dropout,
            tinit=tinit,
            tfinal=tfinal,
            deltaT=lora.adalora_delta_t,
            orth_reg_weight=lora.adalora_orth_reg_weight,
            total_step=total_steps,
        )
    rank_pattern = {re.escape(n): r for n, r in p.ranks.items() if r != lora.r}
    alpha_pattern = {re.escape(n): a for n, a in p.alphas.items() if a != base_alpha}
    init: bool | str = True if lora.init == "default" else lora.init
    return PeftLoraConfig(
        task_type=task_type,
        target_modules=targets,
        r=lora.r,
        lora_alpha=base_alpha,
        lora_dropout=lora.dropout,
        use_dora=lora.use_dora,
        use_rslora=lora.use_rslora,
        init_lora_weights=init,
        rank_pattern=rank_pattern,
        alpha_pattern=alpha_pattern,
        bias="none",
    )
