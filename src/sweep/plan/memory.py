"""Predicted peak training memory of one trial config, in parts, from the model's config alone.

    plan_memory(cfg) -> MemoryPlan       the parts below for cfg's batch and sequence length
    largest_batch(cfg, device_mb) -> int  the largest train.batch_size whose plan fits (0: not even 1)

  base_weights_mb   the base model as stored for its quantization (4-bit weights packed, with their scales),
                    buffers included; with adapter_mb it is exactly the trial's `weights_mb` metric (the same
                    function, sweep.measure.params.weights_mb, counts the adapted model on the meta device)
  adapter_mb        the trainable parameters (LoRA A/B, DoRA magnitudes, the trainable copy of a classifier head)
  grads_mb          their gradients (the parameters' dtype), counted whole at the activation peak (conservative:
                    by the time most exist, most activations are freed; the overcount is at most grads_mb)
  optimizer_mb      optimizer state inside PyTorch's allocator (sweep.plan.optimizer, per optimizer)
  paged_mb          a paged optimizer's state in CUDA unified memory, outside the allocator; it may spill to host
                    memory, and is counted as resident in total_mb
  activations_mb    the activation peak of one step (sweep.plan.activations: the formula and its assumptions)
  workspace_mb      cuBLAS's workspace, allocated through PyTorch's allocator (32 MiB on Hopper, 8 MiB before)
  allocator_peak_mb what torch.cuda.max_memory_allocated() would read after a training step: the sum of the above
                    except paged_mb
  cuda_context_mb   the CUDA context, kernels and libraries (outside the allocator; 300-500 MiB, 500 assumed)
  allocator_reserve_mb   the caching allocator's reserve above its allocations (fragmentation, cached blocks;
                    10% of the allocator peak assumed)
  total_mb          allocator_peak_mb + cuda_context_mb + allocator_reserve_mb + paged_mb: what the card must hold

The fixed costs are assumptions until measured on a GPU (docs/memory-planning.md); allocator_peak_mb is the part
the tests hold to 10% of a real reading (tests/test_plan.py, marked gpu).
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass

from sweep.config.schema import TrialConfig
from sweep.plan.activations import activation_bytes
from sweep.plan.build import ModelFacts, model_facts
from sweep.plan.optimizer import state_bytes

MIB = 2**20
CUDA_CONTEXT_MB = 500.0  # CUDA context + cuBLAS/cuDNN kernels, outside PyTorch's allocator
ALLOCATOR_RESERVE = 0.10  # reserved above allocated, as a share of the allocator peak
CUBLAS_WORKSPACE_HOPPER_MB = 32.0  # torch's default cuBLAS workspace on compute capability 9.x
CUBLAS_WORKSPACE_MB = 4096 * 1024 * 2 / MIB + 16 * 1024 * 8 / MIB  # the default before Hopper (8.125 MiB)
DEFAULT_LABELS = 2  # a classification head when the label count cannot be read offline (hub data)


@dataclass(frozen=True)
class MemoryPlan:
    """Predicted peak memory of one training step, in MiB, by part (see the module docstring)."""

    batch_size: int
    seq_len: int
    optimizer: str
    base_weights_mb: float
    adapter_mb: float
    grads_mb: float
    optimizer_mb: float
    paged_mb: float
    activations_mb: float
    saved_activations_mb: float  # of activations_mb: kept from forward to backward
    workspace_mb: float
    allocator_peak_mb: float
    cuda_context_mb: float
    allocator_reserve_mb: float
    total_mb: float
    notes: tuple[str, ...] = ()

    @property
    def weights_mb(self) -> float:
        """The adapted model's weights as stored: the trial's `weights_mb` metric."""
        return self.base_weights_mb + self.adapter_mb

    @property
    def fixed_mb(self) -> float:
        return self.cuda_context_mb + self.allocator_reserve_mb

    def fits(self, device_memory_mb: float) -> bool:
        return self.total_mb <= device_memory_mb

    PARTS = ("base_weights_mb", "adapter_mb", "grads_mb", "optimizer_mb", "paged_mb", "activations_mb",
             "workspace_mb", "allocator_peak_mb", "fixed_mb", "total_mb")

    def parts(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in self.PARTS}


def num_labels_of(cfg: TrialConfig) -> tuple[int | None, str | None]:
    """(label count, note): read from built-in and local data (a file read, no model); hub data would need the
    network, so a 2-label head is assumed there and said so (the head is hidden x labels: a few KiB)."""
    d = cfg.data
    if d.task != "classification":
        return None, None
    if d.source == "hub":
        return DEFAULT_LABELS, f"data.source=hub: {DEFAULT_LABELS} labels assumed offline"
    return _labels(json.dumps(asdict(d), sort_keys=True), cfg.train.seed), None


@functools.lru_cache(maxsize=32)
def _labels(data_json: str, seed: int) -> int:
    from sweep.data import load_records

    d = json.loads(data_json)
    keys = ("task", "source", "name", "train_file", "eval_file", "train_split", "eval_split", "text_field",
            "label_field", "instruction_field", "input_field", "output_field", "train_size", "eval_size")
    records = load_records(**{k: d[k] for k in keys}, seed=seed)
    return len(records.label_names)


def workspace_mb(compute_capability: tuple[int, int] | None) -> float:
    """cuBLAS's default workspace for a card (the larger Hopper one when the card is unknown)."""
    if compute_capability is None or compute_capability[0] >= 9:
        return CUBLAS_WORKSPACE_HOPPER_MB
    return CUBLAS_WORKSPACE_MB


def plan_memory(cfg: TrialConfig, *, num_labels: int | None = None, batch_size: int | None = None,
                seq_len: int | None = None, compute_capability: tuple[int, int] | None = None,
                kernels: str = "cuda") -> MemoryPlan:
    """The predicted peak memory of one training step of `cfg` on a CUDA device, from its config alone (the model
    is built on the meta device: no weights, no GPU). `batch_size` / `seq_len` default to train.batch_size and
    data.max_seq_len (the longest batch); `num_labels` to the data's label count; `compute_capability` of the card
    sizes cuBLAS's workspace; `kernels="cpu"` plans CPU's attention and dropout kernels instead (for the checks on
    a CPU machine)."""
    notes: list[str] = []
    if num_labels is None:
        num_labels, note = num_labels_of(cfg)
        if note:
            notes.append(note)
    facts = model_facts(cfg, num_labels)
    return plan_from_facts(facts, cfg, batch_size=batch_size or cfg.train.batch_size,
                           seq_len=seq_len or cfg.data.max_seq_len, compute_capability=compute_capability,
                           kernels=kernels, notes=tuple(notes))


def plan_from_facts(f: ModelFacts, cfg: TrialConfig, *, batch_size: int, seq_len: int,
                    compute_capability: tuple[int, int] | None = None, kernels: str = "cuda",
                    notes: tuple[str, ...] = ()) -> MemoryPlan:
    t = cfg.train
    cuda = kernels == "cuda"
    trainable = f.trainable_bytes
    opt = state_bytes(t.optimizer, f.trainable, cuda=cuda)
    act = activation_bytes(f, batch=batch_size, seq=seq_len, precision=t.precision,
                           gradient_checkpointing=t.gradient_checkpointing, lora_dropout=cfg.lora.dropout,
                           use_dora=cfg.lora.use_dora, kernels=kernels)
    base = f.stored_bytes - trainable
    ws = workspace_mb(compute_capability) if cuda else 0.0
    peak_bytes = base + trainable + trainable + opt.device_bytes + max(act.peak, opt.step_temp_bytes)
    allocator_peak = peak_bytes / MIB + ws
    context = CUDA_CONTEXT_MB if cuda else 0.0
    reserve = ALLOCATOR_RESERVE * allocator_peak if cuda else 0.0
    return MemoryPlan(
        batch_size=batch_size, seq_len=seq_len, optimizer=t.optimizer,
        base_weights_mb=base / MIB, adapter_mb=trainable / MIB, grads_mb=trainable / MIB,
        optimizer_mb=opt.device_bytes / MIB, paged_mb=opt.paged_bytes / MIB, activations_mb=act.peak / MIB,
        saved_activations_mb=act.saved / MIB, workspace_mb=ws, allocator_peak_mb=allocator_peak,
        cuda_context_mb=context, allocator_reserve_mb=reserve,
        total_mb=allocator_peak + context + reserve + opt.paged_bytes / MIB, notes=notes)


def largest_batch(cfg: TrialConfig, device_memory_mb: float, *, num_labels: int | None = None,
                  seq_len: int | None = None, compute_capability: tuple[int, int] | None = None,
                  limit: int = 65536) -> int:
    """The largest train.batch_size whose planned total fits `device_memory_mb` (memory grows with the batch, so a
    doubling search then a bisection: a few dozen plans, each arithmetic once the model's facts are built); 0
    when even a batch of 1 does not fit; `limit` caps the search."""
    def fits(b: int) -> bool:
        p = plan_memory(cfg, num_labels=num_labels, batch_size=b, seq_len=seq_len,
                        compute_capability=compute_capability)
        return p.fits(device_memory_mb)

    if not fits(1):
        return 0
    lo, hi = 1, 2
    while hi <= limit and fits(hi):
        lo, hi = hi, hi * 2
    if hi > limit:
        return lo
    while hi - lo > 1:  # fits(lo), not fits(hi)
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo
