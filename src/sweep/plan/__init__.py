"""Will it fit? Predicted peak training memory of a trial config from the model's config alone (meta device: no
weights, no GPU), by part, and the largest batch that fits a device.

    from sweep.plan import plan_memory, largest_batch
    plan_memory(cfg) -> MemoryPlan                 parts in MiB; .allocator_peak_mb, .total_mb, .fits(mib)
    largest_batch(cfg, device_memory_mb) -> int    0 when not even a batch of 1 fits
    sweep.plan.budget.rule_out(cfg, Budget)        why a config is ruled out before training, or None

  build.py        the adapted model on the meta device, as sweep.trial builds it; ModelFacts read off it
  optimizer.py    optimizer state per optimizer (AdamW, 8-bit and paged bitsandbytes, Adafactor)
  activations.py  the activation formula and its assumptions
  memory.py       MemoryPlan: the parts, the fixed costs, largest_batch
  budget.py       the sweep's budgets (sweep.memory_budget_mb, sweep.max_trainable_params) and their verdicts
  simulate.py     one step on fake tensors under torch's MemTracker: the formula's cross-check on CPU
  configs.py      the configs of an experiment's search space (grid or seeded sample)
  __main__.py     python -m sweep.plan +experiment=NAME [--gpu ID | --device-memory SIZE]
"""

from sweep.plan.memory import MemoryPlan, largest_batch, plan_memory

__all__ = ["MemoryPlan", "largest_batch", "plan_memory"]
