"""One table of the GPUs lorasweep plans for and prices: name as the driver reports it, memory, dense peak FLOP/s
per precision, and a price per hour.

  id          the short name a command line takes (`python -m sweep.plan --gpu a100-80gb`, `cost.device=...`)
  name        what `torch.cuda.get_device_name()` / `nvidia-smi --query-gpu=name` print for that card
  memory_mib  `nvidia-smi --query-gpu=memory.total` in MiB: what the driver reports, before the CUDA context
              takes its share (sweep.plan adds that context on top of its prediction)
  tflops      dense peak tensor throughput in TFLOP/s per precision (fp32 = the non-tensor FP32 rate; tf32, bf16,
              fp16 = tensor cores with FP32 accumulation, without the 2:4 sparsity that datasheets print with an
              asterisk: the datasheet figure "with sparsity" halved); None = the card has no such path
  price_usd_h USD per device-hour, with whose price and when in `price_source`; None = no price this table can
              vouch for (set cost.price_per_device_hour yourself)

Memory sizes are the totals nvidia-smi shows for these cards (the driver keeps a little of the nominal GB for
itself); they were not re-read on this machine (a CPU box without a GPU, 2026-12-04), so a card reporting a slightly
different total is matched by name, and `--device-memory` takes any size. FLOP/s figures are from the vendor
datasheets cited per row. Prices are public on-demand list prices as known on the date given, not re-checked here
(no internet on the machine that wrote this table): check them before a decision rests on them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")


@dataclass(frozen=True)
class Device:
    id: str  # short id used on command lines and in cost configs
    name: str  # as the driver reports it
    memory_mib: int  # nvidia-smi memory.total, MiB
    tflops: dict[str, float | None] = field(default_factory=dict)  # dense peak TFLOP/s per precision
    price_usd_h: float | None = None  # USD per device-hour (None = unknown)
    price_source: str | None = None  # whose price and when
    compute_capability: tuple[int, int] | None = None  # CUDA compute capability (None = a generic size)

    def peak_flops(self, precision: str) -> float | None:
        """Dense peak FLOP/s (not TFLOP/s) for `precision` (fp32, tf32, bf16, fp16); None when the card has none."""
        t = self.tflops.get(precision)
        return None if t is None else t * 1e12


def _t(fp32: float | None, tf32: float | None, bf16: float | None, fp16: float | None) -> dict[str, float | None]:
    return dict(zip(PRECISIONS, (fp32, tf32, bf16, fp16)))


AWS_2025 = "AWS EC2 on-demand list price, us-east-1, Linux, {inst} (1 GPU, whole instance), as known in 2025; not re-checked 2026-12-04"

DEVICES: tuple[Device, ...] = (
    # NVIDIA A100 Tensor Core GPU datasheet (A100 80GB SXM): FP32 19.5, TF32 156 (312 sparse), BF16/FP16 312 (624 sparse)
    Device("a100-80gb", "NVIDIA A100-SXM4-80GB", 81920, _t(19.5, 156.0, 312.0, 312.0), None, None, (8, 0)),
    # NVIDIA H100 Tensor Core GPU datasheet (H100 SXM): FP32 67, TF32 989 sparse, BF16/FP16 1979 sparse -> dense halves
    Device("h100-80gb", "NVIDIA H100 80GB HBM3", 81559, _t(67.0, 494.7, 989.4, 989.4), None, None, (9, 0)),
    # NVIDIA H200 Tensor Core GPU datasheet (H200 SXM): the H100 SXM compute figures, 141 GB HBM3e
    Device("h200", "NVIDIA H200", 143771, _t(67.0, 494.7, 989.4, 989.4), None, None, (9, 0)),
    # NVIDIA L4 Tensor Core GPU datasheet: FP32 30.3, TF32 120 sparse, BF16/FP16 242 sparse -> dense halves
    Device("l4", "NVIDIA L4", 23034, _t(30.3, 60.0, 121.0, 121.0), 0.8048, AWS_2025.format(inst="g6.xlarge"), (8, 9)),
    # NVIDIA Ada Lovelace architecture whitepaper, appendix (RTX 4090): FP32 82.6; TF32 82.6 dense; FP16/BF16 tensor
    # with FP32 accumulate 165.2 dense (330.3 sparse)
    Device("rtx4090", "NVIDIA GeForce RTX 4090", 24564, _t(82.6, 82.6, 165.2, 165.2), None, None, (8, 9)),
    # AWS's A10G has no NVIDIA datasheet of its own: the NVIDIA A10 datasheet figures (FP32 31.2, TF32 62.5 dense /
    # 125 sparse, BF16/FP16 125 dense / 250 sparse) stand in; the A10G runs at somewhat lower clocks
    Device("a10g", "NVIDIA A10G", 23028, _t(31.2, 62.5, 125.0, 125.0), 1.006, AWS_2025.format(inst="g5.xlarge"), (8, 6)),
    # NVIDIA T4 datasheet: FP32 8.1, mixed-precision FP16/FP32 65; Turing has no TF32 or BF16 tensor cores
    Device("t4", "Tesla T4", 15360, _t(8.1, None, None, 65.0), 0.526, AWS_2025.format(inst="g4dn.xlarge"), (7, 5)),
    # NVIDIA Ampere GA102 whitepaper (RTX A6000): FP32 38.7; TF32 77.4 dense (154.8 sparse); FP16/BF16 tensor with
    # FP32 accumulate 154.8 dense (309.7 sparse, the "Tensor performance" of the A6000 datasheet)
    Device("rtx-a6000", "NVIDIA RTX A6000", 49140, _t(38.7, 77.4, 154.8, 154.8), None, None, (8, 6)),
    # any 24 GiB card, for "will it fit" questions; no throughput, no price
    Device("24gb", "generic 24 GiB GPU", 24576, _t(None, None, None, None), None, None, None),
)

BY_ID: dict[str, Device] = {d.id: d for d in DEVICES}
BY_NAME: dict[str, Device] = {d.name: d for d in DEVICES}


SIZE_UNITS = {"": 1.0, "mib": 1.0, "m": 1.0, "gib": 1024.0, "g": 1024.0, "tib": 1024.0 ** 2,
              "mb": 1e6 / 2**20, "gb": 1e9 / 2**20, "tb": 1e12 / 2**20}


def memory_size(text: str) -> float:
    """MiB in a size like 24GiB, 80GB, 24576MiB or 24576 (MiB); ValueError when it is not one."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", str(text or ""))
    unit = m and m.group(2).lower()
    if not m or unit not in SIZE_UNITS or float(m.group(1)) <= 0:
        raise ValueError(f"cannot read {text!r} as a memory size (give e.g. 24GiB, 80GB or 24576MiB)")
    return float(m.group(1)) * SIZE_UNITS[unit]


def gib(mb: float) -> str:
    """A memory size for people: 23.4 GiB, or 512 MiB below 1 GiB."""
    return f"{mb / 1024:.1f} GiB" if mb >= 1024 else f"{mb:,.0f} MiB"


def memory_of(value) -> tuple[float | None, str, tuple[int, int] | None]:
    """(MiB, label, compute capability) of a memory budget given as a number of MiB, a size (24GiB, 80GB) or a GPU
    id of this table (its memory and capability); (None, "", None) for None; ValueError naming the accepted forms."""
    if value is None:
        return None, "", None
    if isinstance(value, bool):
        raise ValueError(f"got {value!r}: give MiB (24576), a size (24GiB, 80GB) or a GPU id ({ids()})")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise ValueError(f"must be > 0, got {value}")
        return float(value), gib(float(value)), None
    text = str(value).strip()
    if text in BY_ID:
        d = BY_ID[text]
        return float(d.memory_mib), f"{d.name} ({d.memory_mib:,} MiB)", d.compute_capability
    try:
        mb = memory_size(text)
    except ValueError:
        raise ValueError(f"cannot read {value!r}: give MiB (24576), a size (24GiB, 80GB) or a GPU id ({ids()})") from None
    return mb, gib(mb), None


def ids() -> str:
    return ", ".join(BY_ID)


def by_id(device_id: str) -> Device:
    """The table's entry for a short id; KeyError naming the known ids."""
    try:
        return BY_ID[device_id]
    except KeyError:
        raise KeyError(f"unknown GPU id {device_id!r} (known: {ids()})") from None


def by_name(name: str) -> Device | None:
    """The entry for a name as the driver reports it (exact, then ignoring case and spacing); None if unknown."""
    if name in BY_NAME:
        return BY_NAME[name]
    norm = " ".join(name.lower().split())
    for d in DEVICES:
        if " ".join(d.name.lower().split()) == norm:
            return d
    return None
