"""Resident memory of one base, one base + K adapters, and K merged models: each in a fresh process.

A process that built one layout has a heap shaped by it (freed blocks are reused), so
each layout is loaded in its own `python -m sweep.multitask.memory SPEC MODE` process.
Inside, `sweep.measure.memory.PeakMemory` does what it does for trials: heap trimmed,
anonymous resident memory (RssAnon) read as the baseline once torch, transformers and
peft are imported, then sampled every few ms. `resident_mb` is what stays resident once
everything is loaded (heap trimmed again), `peak_mb` includes the loading spike.

    python -m sweep.multitask.memory spec.json base|stack|merged   # prints one JSON line
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from sweep.multitask import MultitaskError

MODES = ("base", "stack", "merged")


@dataclass
class Memory:
    """Resident memory (MiB, anonymous RSS above the process's baseline after imports) of each layout."""

    base_mb: float  # one base model alone
    stack_mb: float  # one base + K adapters (what one multi-task deployment holds)
    merged_mb: float  # K merged models (what K per-task deployments hold together)
    k: int  # adapters / merged models
    stack_peak_mb: float  # loading peak of the stack
    merged_peak_mb: float  # loading peak of the K merged models

    @property
    def adapter_mb(self) -> float:
        """Resident memory one adapter adds to the base (mean over the K)."""
        return (self.stack_mb - self.base_mb) / self.k

    @property
    def merged_each_mb(self) -> float:
        """Resident memory of one merged model (mean over the K)."""
        return self.merged_mb / self.k


def _spec(chosen: list, device: str) -> dict:
    return {"device": device, "studies": [{"study": c.study, "config": c.config.to_dict(), "adapter_dir": str(c.adapter_dir)}
                                           for c in chosen]}


def measure_all(chosen: list, device: str, workdir: Path, timeout_s: float = 600) -> Memory:
    """Run the three layouts, one fresh process each."""
    workdir.mkdir(parents=True, exist_ok=True)
    spec = workdir / "memory_spec.json"
    spec.write_text(json.dumps(_spec(chosen, device)))
    got = {}
    for mode in MODES:
        out = subprocess.run([sys.executable, "-m", "sweep.multitask.memory", str(spec), mode], capture_output=True,
                             text=True, timeout=timeout_s, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        lines = out.stdout.strip().splitlines()
        if out.returncode != 0 or not lines:
            last = (out.stderr.strip().splitlines() or ["no output"])[-1]
            raise MultitaskError(f"memory measurement ({mode}) failed in its process: {last[:300]}")
        got[mode] = json.loads(lines[-1])
    return Memory(got["base"]["resident_mb"], got["stack"]["resident_mb"], got["merged"]["resident_mb"], len(chosen),
                  got["stack"]["peak_mb"], got["merged"]["peak_mb"])


def _chosen_from_spec(spec: dict) -> list:
    from sweep.config.schema import TrialConfig
    from sweep.multitask.select import Chosen

    return [Chosen(study=s["study"], config_hash="", how="", config=TrialConfig.from_dict(s["config"]), metrics={},
                   meta={}, adapter_dir=Path(s["adapter_dir"]), source="") for s in spec["studies"]]


def _main(argv: list[str]) -> int:
    from sweep.quiet import quiet_libraries

    quiet_libraries()
    spec_path, mode = argv
    spec = json.loads(Path(spec_path).read_text())
    import peft  # noqa: F401  (imported before the baseline: library code is not the layout's memory)
    import torch  # noqa: F401
    import transformers  # noqa: F401

    from sweep.measure.memory import PeakMemory
    from sweep.multitask import stack

    chosen = _chosen_from_spec(spec)
    device = spec["device"]
    with PeakMemory(device) as mem:
        if mode == "base":
            held = [stack.build_base(chosen[0], device)]
        elif mode == "stack":
            held = [stack.load_stack(chosen, device)]
        else:
            held = [stack.load_merged(c, device) for c in chosen]
        peak = mem.read().peak_mb
        mem.restart_peak()  # heap trimmed, peak reset to what is resident now
        resident = mem.read().peak_mb
    print(json.dumps({"mode": mode, "resident_mb": resident, "peak_mb": peak, "objects": len(held)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
