"""One way a config is ruled out before training: the sweep's budgets, checked on its plan.

    Budget.of(sweep_cfg)        sweep.memory_budget_mb (MiB, a size, or a GPU id of sweep/devices.py) and
                                sweep.max_trainable_params, resolved once
    rule_out(cfg, budget)       None when `cfg` is within every budget, else the Verdict saying which and by how much

The memory budget compares sweep.plan's total (allocator peak + CUDA context + allocator reserve + paged state:
what the card must hold) with the budget; the parameter budget compares the adapted model's trainable parameters,
counted exactly on the meta device (the trial's own `trainable_params`). A ruled-out config is never trained: the
dispatcher tells Optuna it is PRUNED with a constraint violation (`Verdict.constraint`, relative excess), which
TPE reads so that it stops proposing its neighbourhood (NSGA-II builds its populations from COMPLETE trials only, so
it does not learn from them), stores `Verdict.stored()` on the trial
(records.INFEASIBLE) and writes an MLflow run the report lists under "Ruled out before training".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sweep.config.schema import TrialConfig
from sweep.devices import gib

MIB = 2**20
MEMORY = "memory_budget"  # the Optuna constraint names (trial.set_constraint)
PARAMS = "trainable_params_budget"


@dataclass(frozen=True)
class Budget:
    """What a config must stay within to be trained."""

    memory_mb: float | None = None  # total planned memory; None = no memory budget
    memory_label: str = ""  # how it was given: "24 GiB", "NVIDIA L4 (23,034 MiB)"
    compute_capability: tuple[int, int] | None = None  # of the GPU named (sizes cuBLAS's workspace); None = Hopper's
    max_trainable_params: int | None = None

    @property
    def active(self) -> bool:
        return self.memory_mb is not None or self.max_trainable_params is not None

    @classmethod
    def of(cls, sweep_cfg) -> Budget:
        from sweep.devices import memory_of

        mb, label, cc = memory_of(sweep_cfg.memory_budget_mb)
        return cls(mb, label, cc, sweep_cfg.max_trainable_params)


@dataclass(frozen=True)
class Verdict:
    """Why a config is not trained: the first budget it exceeds."""

    constraint: str  # MEMORY | PARAMS: the Optuna constraint it violates
    reason: str  # one line for the progress display, the study and the report
    violation: float  # (predicted - budget) / budget, > 0: the constraint value told to Optuna
    budget: float  # MiB or parameters
    predicted: float  # the planned total MiB, or the trainable parameters
    trainable_params: int
    allocator_peak_mb: float | None = None  # what predicted_peak_memory_mb means for a trained trial
    activations_mb: float | None = None

    def stored(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, stored: dict[str, Any]) -> Verdict:
        return cls(**{k: stored.get(k) for k in cls.__dataclass_fields__})

    def metrics(self) -> dict[str, float]:
        """The declared metrics a ruled-out config's MLflow run carries (sweep/metrics.py)."""
        out = {"trainable_params": float(self.trainable_params)}
        if self.allocator_peak_mb is not None:
            out["predicted_peak_memory_mb"] = self.allocator_peak_mb
        return out


def rule_out(cfg: TrialConfig, budget: Budget) -> Verdict | None:
    """The verdict on `cfg` (None: train it). The parameter budget is checked first (it needs no activation model,
    so it holds for any model transformers builds); the memory budget needs a model sweep.plan plans (ConfigError
    otherwise, which preflight raises before any worker starts)."""
    from sweep.plan.build import trainable_params
    from sweep.plan.memory import largest_batch, num_labels_of, plan_memory

    if not budget.active:
        return None
    labels, _ = num_labels_of(cfg)
    params = trainable_params(cfg, labels)
    cap = budget.max_trainable_params
    if cap is not None and params > cap:
        return Verdict(PARAMS, f"over budget: {params:,} trainable params > sweep.max_trainable_params={cap:,}",
                       (params - cap) / max(cap, 1), float(cap), float(params), params)
    if budget.memory_mb is None:
        return None
    p = plan_memory(cfg, num_labels=labels, compute_capability=budget.compute_capability)
    if p.fits(budget.memory_mb):
        return None
    best = largest_batch(cfg, budget.memory_mb, num_labels=labels, compute_capability=budget.compute_capability)
    fix = f"train.batch_size<={best} would fit" if best else "not even train.batch_size=1 fits"
    reason = (f"does not fit in {budget.memory_label}: predicted {gib(p.total_mb)}, of which activations "
              f"{gib(p.activations_mb)} (batch {p.batch_size} x {p.seq_len} tokens; {fix}; sweep.memory_budget_mb)")
    return Verdict(MEMORY, reason, (p.total_mb - budget.memory_mb) / budget.memory_mb, budget.memory_mb,
                   p.total_mb, params, p.allocator_peak_mb, p.activations_mb)
