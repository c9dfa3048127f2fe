"""One training step of the real PEFT model on fake tensors, with torch's MemTracker counting every tensor: the
cross-check of the formula in sweep.plan.activations.

The adapted meta model (sweep.plan.build) is moved onto FakeTensorMode's CPU tensors (no memory, no arithmetic) and
runs two steps as the Trainer runs them (autocast for bf16/fp16, gradient checkpointing through the model's own
switch, AdamW fused, zero_grad(set_to_none)); `torch.distributed._tools.mem_tracker.MemTracker` records the peak of
live tensor bytes by kind. It sees what the formula models, on CPU kernels: fake CUDA tensors cannot run a backward
in a CPU build of torch (the CUDA device guard is missing), so attention and dropout take CPU's kernels (see the
formula's `kernels="cpu"`). A 4-bit base cannot run on fake tensors (bitsandbytes has no fake kernels):
`real=True` runs the trial's own model with real weights on this CPU instead, small models only.

Why the formula plans and this checks: the simulation needs 1-15 s per config for tiny models and MiniLM and minutes
for SmolLM2-135M (MemTracker inspects every module at every operation), needs an unquantized model, and can only
show CPU kernels; the formula is arithmetic, covers 4-bit bases and CUDA's kernels, and agrees with it within 1-3%
where both apply (tests/test_plan.py, docs/memory-planning.md). The plan never depends on this module.

MemTracker is a private module of torch (torch.distributed._tools), and in torch 2.13 it installs a gradient hook on
every parameter it meets, which fails on a frozen one: the tracker is told that frozen parameters are already hooked
(its `_param_to_grad_hook_handles`). Both are checked first: outside TORCH_RANGE, or with the names missing,
`simulate` raises SimulationUnavailable naming the installed version and the range, and says the plan stands on
the formula alone. No silent fallback.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass

from sweep.config.schema import TrialConfig

TORCH_RANGE = ">=2.13,<2.14"  # the torch minor versions MemTracker was used with here
MIB = 2**20


class SimulationUnavailable(RuntimeError):
    """The fake-tensor simulation cannot run with the installed torch (or for this config)."""


@dataclass(frozen=True)
class Simulated:
    """Peak bytes of a simulated step by MemTracker's kinds, at the moment of the peak."""

    peak: int
    weights: int  # parameters and buffers
    grads: int
    optimizer: int
    activations: int  # activations, backward temporaries and the inputs


def _tracker_class():
    from importlib import metadata

    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    version = metadata.version("torch")
    if Version(Version(version).base_version) not in SpecifierSet(TORCH_RANGE):
        raise SimulationUnavailable(f"the fake-tensor simulation was written against torch{TORCH_RANGE} "
                                    f"(torch.distributed._tools.mem_tracker is private); torch {version} is installed: "
                                    "the plan uses the formula alone")
    try:
        from torch.distributed._tools.mem_tracker import MemTracker
    except ImportError as exc:
        raise SimulationUnavailable(f"torch {version} has no torch.distributed._tools.mem_tracker ({exc}): the "
                                    "plan uses the formula alone") from None
    probe = MemTracker()
    if not hasattr(probe, "_param_to_grad_hook_handles") or not hasattr(probe, "get_tracker_snapshot"):
        raise SimulationUnavailable(f"MemTracker of torch {version} lacks the names this simulation relies on "
                                    f"(_param_to_grad_hook_handles, get_tracker_snapshot); supported: torch{TORCH_RANGE}")
    return MemTracker


class _NoHook:
    def remove(self) -> None:
        pass


def simulate(cfg: TrialConfig, *, num_labels: int | None, batch: int | None = None, seq: int | None = None,
             steps: int = 2, real: bool = False) -> Simulated:
    """Peak memory of `steps` training steps of `cfg` (the second step has the optimizer state): on fake CPU
    tensors built from the meta model, or with `real` the trial's own model with real weights on this CPU (small
    models only; the one way to watch a 4-bit base train without a GPU)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    tracker_cls = _tracker_class()
    b = batch or cfg.train.batch_size
    s = seq or cfg.data.max_seq_len
    if real:
        model, vocab = _real_model(cfg, num_labels)
        mode = contextlib.nullcontext()
    else:
        if cfg.quant.enabled:
            raise SimulationUnavailable("a quantized base cannot run on fake tensors (bitsandbytes' 4-bit kernels have "
                                        "no fake implementation): plan it with the formula, or simulate real=True")
        from sweep.plan.build import meta_model

        model, hf, _ = meta_model(cfg, num_labels)
        vocab = hf.vocab_size
        mode = FakeTensorMode(allow_non_fake_inputs=True)
    with warnings.catch_warnings(), mode:
        warnings.simplefilter("ignore")
        if not real:
            model.to_empty(device="cpu")
            model.get_base_model().tie_weights()  # to_empty gives a tied weight a storage per module: share it again
        return _steps(model, vocab, cfg, b, s, steps, tracker_cls)


def _real_model(cfg: TrialConfig, num_labels: int | None, device: str = "cpu"):
    """The trial's construction on `device` (this CPU by default), with real (seeded random or packaged) weights."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    from sweep import adapters
    from sweep.models.loader import build_model, inventory, set_cpu_inference_packing

    m, d, q, t = cfg.model, cfg.data, cfg.quant, cfg.train
    base = build_model(m, task=d.task, num_labels=num_labels, quant=q, seed=t.seed, device=device)
    if q.enabled and q.prepare_kbit:
        base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=t.gradient_checkpointing)
    if q.enabled:
        set_cpu_inference_packing(base, False)
    plan = adapters.plan(cfg.lora, inventory(m, d.task, num_labels))
    model = get_peft_model(base, adapters.peft_config(cfg.lora, plan, task=d.task, total_steps=100))
    return model, base.config.vocab_size


def _steps(model, vocab: int, cfg: TrialConfig, b: int, s: int, steps: int, tracker_cls) -> Simulated:
    """Training steps as the Trainer runs them, under the memory tracker."""
    import torch

    t = cfg.train
    autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(t.precision)
    if t.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    ids = torch.randint(0, vocab, (b, s))
    mask = torch.ones(b, s, dtype=torch.long)
    if b > 1:
        mask[0, -1] = 0  # a padded batch, as the collator's are
    batch_in = {"input_ids": ids, "attention_mask": mask,
                "labels": ids.clone() if cfg.data.task != "classification" else torch.zeros(b, dtype=torch.long)}
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3, fused=True)
    tracker = tracker_cls()
    for p in model.parameters():
        if not p.requires_grad:  # torch 2.13's tracker hooks every parameter; a frozen one cannot take a hook
            tracker._param_to_grad_hook_handles[p] = (_NoHook(), _NoHook())
    tracker.track_external(model, opt, batch_in)
    with tracker:
        for _ in range(steps):
            with torch.autocast("cpu", dtype=autocast) if autocast else contextlib.nullcontext():
                loss = model(**batch_in).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            del loss
            tracker.reset_mod_stats()
    snap = tracker.get_tracker_snapshot("peak")
    kinds = {str(k.value) if hasattr(k, "value") else str(k): v for k, v in next(iter(snap.values())).items()}
    return Simulated(peak=kinds["Total"], weights=kinds.get("Parameter", 0) + kinds.get("Buffer", 0),
                     grads=kinds.get("Gradient", 0), optimizer=kinds.get("Optstate", 0),
                     activations=kinds.get("Activation", 0) + kinds.get("Temp", 0) + kinds.get("Other", 0))
