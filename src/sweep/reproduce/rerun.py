"""Rerun a recorded trial from its config and compare (lookup.py finds it, compare.py judges it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sweep.reproduce.compare import Row, compare
from sweep.reproduce.lookup import Original, ReproduceError, find_original


@dataclass
class Outcome:
    original: Original
    rerun_status: str
    rerun_device: str
    rows: list[Row]
    gpu: bool
    hash_now: str
    output_dir: Path

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows if r.judged)


def reproduce(prefix: str, *, tracking_uri: str, sweeps_dir: Path | str = "sweeps",
              runner: Callable | None = None, log: Callable[[str], None] = print) -> Outcome:
    """Find the trial, rebuild its TrialConfig, run it again and compare (runner defaults to sweep.trial.run_trial)."""
    from sweep.config.errors import ConfigError
    from sweep.config.hashing import config_hash
    from sweep.config.schema import TrialConfig

    original = find_original(prefix, tracking_uri, sweeps_dir)
    try:
        cfg = TrialConfig.from_dict(original.config)
    except ConfigError as exc:
        raise ReproduceError(f"config {original.config_hash} no longer validates: {'; '.join(exc.problems)}") from None
    hash_now = config_hash(cfg)
    log(f"reproducing {original.config_hash} ({original.source.where()}; recorded status {original.status or '?'}, "
        f"device {original.device or '?'})")
    if hash_now != original.config_hash:
        log(f"warning: this config hashes to {hash_now} today, not {original.config_hash}: the schema or its defaults "
            "changed since the sweep; the rerun may legitimately differ")
    if runner is None:
        from sweep.trial import run_trial as runner
    if original.threads and not original.device.startswith("cuda"):
        import torch  # a CPU float sum depends on how many threads split it: rerun with the original's count

        log(f"torch threads: {original.threads}, as in the original (was {torch.get_num_threads()})")
        torch.set_num_threads(original.threads)
    out = Path(sweeps_dir) / "reproduce" / original.config_hash
    result = runner(cfg, output_dir=out)
    status = getattr(result.status, "value", str(result.status))
    device = str((getattr(result, "meta", None) or {}).get("device", ""))
    gpu = original.device.startswith("cuda") or device.startswith("cuda")
    rows = compare(original.metrics, dict(result.metrics), gpu=gpu, original_status=original.status, rerun_status=status)
    if getattr(result, "error", None):
        log(f"rerun reported: {result.error}")
    return Outcome(original, status, device, rows, gpu, hash_now, out)
