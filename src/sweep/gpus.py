"""This machine's GPUs as the driver lists them, without importing torch, and what a process may use of them.

    machine_gpus() -> [Gpu]      NVML (nvidia-ml-py) when installed, else `nvidia-smi -L`, else the driver's
                                 /proc/driver/nvidia/gpus (count only); MIG instances listed under their GPU
    visible_gpus() -> [str]      the ids local workers are given: CUDA_VISIBLE_DEVICES when set, else each GPU's UUID
                                 (each MIG instance's, where MIG is on: CUDA can only use those), so that a worker's
                                 GPU is the same device whatever order CUDA and the driver count them in
    pin_one_gpu(environ)         a command that runs one trial (sweep.trial, sweep.reproduce) uses one GPU: with
                                 several visible, CUDA_VISIBLE_DEVICES is narrowed to the first before CUDA starts
                                 (transformers' Trainer would otherwise wrap the model in DataParallel)

The driver's order (PCI bus) can differ from CUDA's (fastest first, unless CUDA_DEVICE_ORDER=PCI_BUS_ID); a UUID in
CUDA_VISIBLE_DEVICES names one device in both. WSL2 has no /proc/driver/nvidia; nvidia-smi and NVML work there.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass

NVIDIA_SMI_TIMEOUT_S = 10.0
BF16_CAPABILITY = (8, 0)  # bf16 tensor cores: Ampere and newer
_GPU_LINE = re.compile(r"^GPU (\d+): (.+?) \(UUID: ([^)]+)\)\s*$")
_MIG_LINE = re.compile(r"^\s+MIG (\S+)\s+Device\s+(\d+): \(UUID: ([^)]+)\)\s*$")


@dataclass(frozen=True)
class Gpu:
    index: str  # the driver's index ("0"), or "0/1" for MIG instance 1 of GPU 0
    name: str  # "NVIDIA H200", or the MIG profile under its GPU's name: "NVIDIA A100-SXM4-80GB MIG 3g.40gb"
    uuid: str  # GPU-... or MIG-...; "" when only the count is known
    mig: bool = False
    capability: tuple[int, int] | None = None  # CUDA compute capability (a MIG instance: its GPU's)
    memory_mib: int | None = None  # the driver's memory.total (a MIG instance: None)


def parse_query(text: str) -> list[Gpu]:
    """`nvidia-smi --query-gpu=index,uuid,name,compute_cap,memory.total --format=csv,noheader,nounits` lines."""
    out = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 5 or not parts[0].isdigit():
            continue
        index, uuid, name, cap, mem = parts
        major, _, minor = cap.partition(".")
        capability = (int(major), int(minor)) if major.isdigit() and minor.isdigit() else None
        out.append(Gpu(index, name, uuid, capability=capability, memory_mib=int(mem) if mem.isdigit() else None))
    return out


def parse_list(text: str, known: list[Gpu] | None = None) -> list[Gpu]:
    """`nvidia-smi -L`'s lines: a GPU, or one MIG instance under the GPU above it. A GPU with MIG instances is
    replaced by them (CUDA sees the instances, not the GPU). `known`: the same GPUs from parse_query, whose
    capability and memory are kept (an instance takes its GPU's capability)."""
    facts = {g.uuid: g for g in known or []}
    out: list[Gpu] = []
    parent: Gpu | None = None
    migs: dict[str, list[Gpu]] = {}
    for line in text.splitlines():
        m = _GPU_LINE.match(line)
        if m:
            uuid = m.group(3).strip()
            k = facts.get(uuid)
            parent = Gpu(m.group(1), m.group(2).strip(), uuid, capability=k.capability if k else None,
                         memory_mib=k.memory_mib if k else None)
            out.append(parent)
            continue
        m = _MIG_LINE.match(line)
        if m and parent is not None:
            migs.setdefault(parent.index, []).append(
                Gpu(f"{parent.index}/{m.group(2)}", f"{parent.name} MIG {m.group(1)}", m.group(3).strip(), mig=True,
                    capability=parent.capability))
    return [g for p in out for g in migs.get(p.index, [p])]


def _nvml() -> list[Gpu] | None:
    """The GPUs through NVML; None when nvidia-ml-py is missing or NVML answers with an error (nvidia-smi is asked
    then), [] when there is no driver."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no driver: nothing to list
        return []
    try:
        return [g for i in range(pynvml.nvmlDeviceGetCount()) for g in _nvml_gpu(pynvml, i)]
    except Exception:  # noqa: BLE001 - an NVML that answers badly: nvidia-smi is asked instead
        return None
    finally:
        pynvml.nvmlShutdown()


def _nvml_gpu(pynvml, i: int) -> list[Gpu]:
    """GPU `i`, or its MIG instances when MIG is on."""
    h = pynvml.nvmlDeviceGetHandleByIndex(i)
    name, uuid = _text(pynvml.nvmlDeviceGetName(h)), _text(pynvml.nvmlDeviceGetUUID(h))
    try:
        cap = tuple(int(x) for x in pynvml.nvmlDeviceGetCudaComputeCapability(h))
    except Exception:  # noqa: BLE001 - an old driver
        cap = None
    try:
        current, _ = pynvml.nvmlDeviceGetMigMode(h)
    except Exception:  # noqa: BLE001 - a GPU without MIG support
        current = 0
    instances = []
    if current:
        for j in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(h)):
            try:
                mh = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(h, j)
            except Exception:  # noqa: BLE001 - an empty slot
                continue
            instances.append(Gpu(f"{i}/{j}", f"{name} MIG", _text(pynvml.nvmlDeviceGetUUID(mh)), mig=True, capability=cap))
    mem = int(pynvml.nvmlDeviceGetMemoryInfo(h).total // 2**20)
    return instances or [Gpu(str(i), name, uuid, capability=cap, memory_mib=mem)]


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _smi(*args: str) -> str | None:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        done = subprocess.run([smi, *args], capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def machine_gpus() -> tuple[Gpu, ...]:
    """This machine's NVIDIA GPUs (MIG instances in place of a GPU in MIG mode); () without any. Read once per
    process (the driver's list does not change under a running sweep)."""
    found = _nvml()
    if found is not None:
        return tuple(found)
    listed = _smi("-L")
    if listed is not None:
        query = _smi("--query-gpu=index,uuid,name,compute_cap,memory.total", "--format=csv,noheader,nounits")
        return tuple(parse_list(listed, parse_query(query or "")))
    try:
        return tuple(Gpu(str(i), "", "") for i in range(len(os.listdir("/proc/driver/nvidia/gpus"))))
    except OSError:
        return ()


def usable(environ: dict | None = None) -> list[Gpu]:
    """The GPUs a process with this environment's CUDA_VISIBLE_DEVICES sees (by index or UUID, as CUDA reads it);
    every GPU when it is unset, none when it is empty or -1."""
    env = os.environ if environ is None else environ
    gpus = list(machine_gpus())
    given = env.get("CUDA_VISIBLE_DEVICES")
    if given is None:
        return gpus
    out = []
    for g in (x.strip() for x in given.split(",")):
        if not g or g.startswith("-"):
            break  # CUDA stops at the first invalid entry
        match = [x for x in gpus if x.uuid == g or x.uuid.startswith(g) or (x.index == g and not x.mig)]
        if not match and g.isdigit() and int(g) < len(gpus):
            match = [gpus[int(g)]]
        if match:
            out.append(match[0])
    return out


def auto_precision(device: str, environ: dict | None = None) -> str:
    """What train.precision=auto means here: fp32 on the CPU (train.device=cpu, or no GPU), bf16 when every usable
    GPU has it (compute capability 8.0 and newer: Ampere, Ada, Hopper, Blackwell), fp16 otherwise (its trainable
    parameters stay fp32: PEFT keeps adapters in fp32). Unknown capabilities count as without bf16."""
    if device == "cpu":
        return "fp32"
    gpus = usable(environ)
    if not gpus:
        return "fp32"
    return "bf16" if all(g.capability is not None and g.capability >= BF16_CAPABILITY for g in gpus) else "fp16"


def without_bf16(environ: dict | None = None) -> list[Gpu]:
    """The usable GPUs that cannot run bf16 (compute capability below 8.0, where known)."""
    return [g for g in usable(environ) if g.capability is not None and g.capability < BF16_CAPABILITY]


def visible_gpus(environ: dict | None = None) -> list[str]:
    """The GPU ids this machine's workers may use: CUDA_VISIBLE_DEVICES when set (as given), else the UUID of each
    GPU or MIG instance (its index when the UUID is unknown); [] on a machine without an NVIDIA GPU."""
    env = os.environ if environ is None else environ
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [g.strip() for g in visible.split(",") if g.strip()]
        return [] if not ids or ids[0].startswith("-") else ids
    return [g.uuid or g.index for g in machine_gpus()]


def pin_one_gpu(environ: dict | None = None) -> str | None:
    """Narrow CUDA_VISIBLE_DEVICES to one GPU when several are visible; returns the GPU kept (None: nothing to
    narrow). Call before CUDA starts in this process (before any torch.cuda call)."""
    env = os.environ if environ is None else environ
    ids = visible_gpus(env)
    if len(ids) < 2:
        return None
    env["CUDA_VISIBLE_DEVICES"] = ids[0]
    return ids[0]
