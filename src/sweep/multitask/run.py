"""The serving measurement end to end: select -> compat -> measure -> memory -> price -> report -> MLflow.

    serve(studies, settings=ServeSettings(...), cost=CostConfig(...), ...) -> (ServingResult, report files)
"""

from __future__ import annotations

import gc
import math
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from sweep.config.errors import Problems
from sweep.multitask import MultitaskError, advice, compat, measure, pricing, section, select, stack, track
from sweep.multitask import memory as memory_mod
from sweep.multitask.result import ServedAdapter, ServingResult


@dataclass
class ServeSettings:
    """How the serving measurement runs (command-line options of python -m sweep.multitask)."""

    switch_iters: int = 200  # set_adapter calls timed (count)
    latency_warmup: int = 3  # untimed forwards before each latency timing (count)
    latency_iters: int = 30  # timed forwards per latency cell (count; 30 gives a 95% median interval from ranks 10-21)
    mixed_rows: int | None = None  # requests in the mixed batch (null = the first study's train.eval_batch_size)
    device_memory_mb: float | None = None  # memory of one serving device for the fit counts, MiB (null = this machine's RAM)
    shares: dict[str, float] = field(default_factory=dict)  # request weight per study (unnamed studies: 1; normalised)
    measure_memory: bool = True  # resident memory of the three layouts, one fresh process each
    device: str = "auto"  # auto | cpu | cuda

    def __post_init__(self) -> None:
        p = Problems()
        for key, low in (("switch_iters", 1), ("latency_iters", 1), ("latency_warmup", 0)):
            if getattr(self, key) < low:
                p.add(f"--{key.replace('_', '-')}", f"must be >= {low}, got {getattr(self, key)}")
        if self.mixed_rows is not None and self.mixed_rows < 2:
            p.add("--mixed-rows", f"must be >= 2 (one row per adapter at least), got {self.mixed_rows}")
        if self.device_memory_mb is not None and not self.device_memory_mb > 0:
            p.add("--device-memory-mb", f"must be > 0, got {self.device_memory_mb}")
        for study, w in self.shares.items():
            if not (math.isfinite(w) and w > 0):
                p.add(f"--share {study}", f"must be a weight > 0, got {w}")
        if self.device not in ("auto", "cpu", "cuda"):
            p.add("--device", f"must be one of auto, cpu, cuda; got {self.device!r}")
        p.raise_if_any()


def _machine_memory_mb() -> float:
    import psutil

    return psutil.virtual_memory().total / 2**20


def _served(c, labels: int) -> ServedAdapter:
    lo = c.config.lora
    flags = "".join(f" {n}" for n, on in (("DoRA", lo.use_dora), ("rsLoRA", lo.use_rslora)) if on)
    text = f"{lo.method}{flags} r={lo.r} alpha={lo.alpha_for(lo.r):g} targets={lo.targets}"
    if lo.schedule != "uniform":
        text += f" ({lo.schedule})"
    return ServedAdapter(c.study, c.config_hash, c.how, c.trial_number, c.run_id, c.source, str(c.config.data.name),
                         labels, text)


def _timed_batch(latency: list, study: str) -> tuple[float, float, int]:
    """(unmerged p50, merged p50, batch) at the largest batch timed for `study`."""
    row = max((r for r in latency if r.study == study), key=lambda r: r.batch)
    return row.unmerged.p50_ms, row.merged.p50_ms, row.batch


def serve(studies: list[str], *, hashes: dict[str, str], tracking_uri: str, sweeps_dir: Path | str, out_root: Path | str,
          cost, settings: ServeSettings, artifact_location: str = ".mlflow/artifacts",
          log: Callable[[str], None] = print) -> tuple[ServingResult, list[Path]]:
    """Measure, price and report one base + K adapters against K merged models; log it to MLflow."""
    import torch

    from sweep.models.loader import load_tokenizer
    from sweep.provenance import device_description
    from sweep.trial import resolve_device

    unknown = sorted(set(settings.shares) - set(studies))
    if unknown:
        raise MultitaskError(f"--share {unknown[0]}=...: {unknown[0]!r} is not among the studies given "
                                    f"({', '.join(studies)})")
    with tempfile.TemporaryDirectory(prefix="lorasweep-serve-") as tmp:
        chosen = select.choose(studies, hashes, tracking_uri=tracking_uri, sweeps_dir=sweeps_dir, dest=Path(tmp), cost=cost)
        for c in chosen:
            log(f"{c.study}: config {c.config_hash} ({c.how}) from {c.source}")
        compat.check_compatible(chosen)
        device = resolve_device(settings.device)
        tok = load_tokenizer(chosen[0].config.model)
        data = {c.study: measure.task_data(c, tok) for c in chosen}
        model = stack.load_stack(chosen, device)
        sizes = stack.head_sizes(model)
        features = compat.unsupported(chosen, sizes)
        log("correctness: each adapter on its own eval set")
        correctness = measure.correctness(model, chosen, data, tok, device)
        log("switching and latency (unmerged vs merged)")
        load = [os.getloadavg()[0]]  # the machine's load around the timings, reported beside them
        switch = measure.switching(model, [c.study for c in chosen], settings.switch_iters)
        latency = measure.latencies(model, chosen, data, tok, device, warmup=settings.latency_warmup,
                                    iters=settings.latency_iters)
        mixed = None
        if "mixed_batch" not in features:
            log("mixed batch")
            rows = settings.mixed_rows or chosen[0].config.train.eval_batch_size
            mixed = measure.mixed_batch(model, chosen, data, tok, device, sizes, rows=rows,
                                        warmup=settings.latency_warmup, iters=settings.latency_iters)
        threads = torch.get_num_threads()
        load.append(os.getloadavg()[0])
        del model
        gc.collect()
        memory = None
        if settings.measure_memory:
            log("memory: base, base + adapters, merged models (fresh processes)")
            memory = memory_mod.measure_all(chosen, device, Path(tmp))
        timed = {c.study: _timed_batch(latency, c.study) for c in chosen}
        batch = float(cost.batch_size_inference or timed[chosen[0].study][2])
        device_mb = settings.device_memory_mb or _machine_memory_mb()
        priced = pricing.price(cost=cost, batch=batch, switch_ms=switch.p50_ms,
                               shares=pricing.even_shares(studies, settings.shares),
                               unmerged_ms={s: t[0] for s, t in timed.items()}, merged_ms={s: t[1] for s, t in timed.items()},
                               device_memory_mb=device_mb, memory=memory)
        text = advice.recommend(correctness=correctness, latency=latency, pricing=priced, memory=memory, cost=cost,
                                k=len(chosen))
        ref = chosen[0]
        result = ServingResult(
            studies=list(studies), adapters=[_served(c, sizes.get(c.study, 0)) for c in chosen],
            base={"name": ref.config.model.name, "source": ref.config.model.source, "quant": ref.config.quant.method,
                  "fingerprint": ref.meta.get("model_fingerprint", "")},
            device=f"{device_description(device)}, {os.cpu_count()} cores", threads=threads,
            measured_at=f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", correctness=correctness, switch=switch,
            latency=latency, mixed=mixed, memory=memory, pricing=priced, features=features, recommendation=text,
            extra={"monthly_requests": cost.monthly_requests, "load_avg_1min": load, "device_memory_from": "--device-memory-mb"
                   if settings.device_memory_mb else "this machine's RAM"})
        result.run_id = track.open_run(result, tracking_uri=tracking_uri, artifact_location=artifact_location)
        files = section.write(result, cost, out_root)
        track.close_run(result.run_id, result, tracking_uri=tracking_uri, files=files)
    return result, files
