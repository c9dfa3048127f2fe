"""One trial: a composed config in, a typed TrialResult out.

    run_trial(cfg) -> TrialResult(status, metrics, error)

Loads data and the base model, attaches the adapter, trains, evaluates, saves the adapter,
and measures what the adapter costs at inference (latency with the adapter active, the
merge check). Exceptions, OOM, a full disk and non-finite losses become a FAILED status
with a one-line reason; a pruner's stop becomes PRUNED. Nothing raises out of here except
KeyboardInterrupt.

The wall time is split into phases (setup, train, eval, save, measure): `train_time_s` is
the optimizer steps only, `eval_time_s` every evaluation, `train_share` = train / whole.
"""

from __future__ import annotations

import json
import math
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sweep import faults
from sweep.config.errors import ConfigError
from sweep.config.hashing import config_hash, write_config
from sweep.config.schema import TrialConfig
from sweep.measure.memory import release as release_memory
from sweep.results import TrialResult, TrialStatus
from sweep.text import one_line
from sweep.tracking.base import NullReporter, NullTracker, Reporter, Tracker

MIB = 1024 * 1024


class Pruned(Exception):
    pass


def resolve_device(requested: str) -> str:
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError(["train.device: cuda requested but no GPU is visible (use train.device=auto or cpu)"])
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def run_trial(cfg: TrialConfig, *, reporter: Reporter | None = None, tracker: Tracker | None = None,
              output_dir: Path | None = None, fault: str | None = None, placement: dict[str, str] | None = None) -> TrialResult:
    """Run one trial; never raises for a failure of the trial itself. `placement` (host, node, GPU of the
    worker) is recorded in meta.json."""
    reporter = reporter or NullReporter()
    tracker = tracker or NullTracker()
    t0 = time.perf_counter()
    out = Path(output_dir) if output_dir else None
    state: dict[str, Any] = {"curves": {}, "metrics": {}, "meta": {}, "phases": {}}
    try:
        if out:
            out.mkdir(parents=True, exist_ok=True)
        _execute(cfg, reporter=reporter, tracker=tracker, out=out, state=state,
                 fault=fault, placement=placement or {})
        result = TrialResult(TrialStatus.COMPLETE, state["metrics"], None)
    except Pruned as exc:
        result = TrialResult(TrialStatus.PRUNED, state["metrics"], str(exc))
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - a trial's failure is a status, never a dead sweep
        result = TrialResult(TrialStatus.FAILED, state["metrics"], faults.failure_reason(exc))
        _write(out, "error.txt", "".join(traceback.format_exception(exc)))
    finally:
        release_memory()
    result.config_hash = config_hash(cfg)
    result.curves = state["curves"]
    result.meta = {**state["meta"], "phases_s": state["phases"]}
    result.duration_s = time.perf_counter() - t0
    if "train_time_s" in result.metrics and result.duration_s > 0:
        result.metrics["train_share"] = result.metrics["train_time_s"] / result.duration_s
    tracker.log_metrics(dict(result.metrics))  # the final values (curves went in during training)
    result.output_dir = str(out) if out else None
    if out:
        try:
            result.save(out / "result.json")
        except OSError as exc:  # a full disk fails this trial, not the sweep
            result.status, result.error = TrialStatus.FAILED, f"disk full: cannot write {out / 'result.json'}: {one_line(exc)}"
    return result


def _write(out: Path | None, name: str, text: str) -> None:
    """Best effort: a diagnostic file must not turn one failure into another."""
    if out:
        try:
            (out / name).write_text(text)
        except OSError:
            pass


class _Phases:
    """Wall time per phase of the trial, in state["phases"]."""

    def __init__(self, phases: dict[str, float]):
        self.phases = phases
        self.t = time.perf_counter()

    def end(self, name: str) -> None:
        now = time.perf_counter()
        self.phases[name] = self.phases.get(name, 0.0) + now - self.t
        self.t = now


def predict_memory(cfg: TrialConfig, device: str, num_labels: int | None) -> tuple[float | None, dict[str, Any]]:
    """sweep.plan's allocator peak of this trial on its own device (CUDA's kernels and the card's cuBLAS workspace,
    or CPU's kernels), logged as predicted_peak_memory_mb, and meta.json's `memory_plan` (every part); or None and
    `memory_plan_error` (one line) when the planner cannot plan it: a prediction never fails a trial."""
    try:
        from sweep.plan import plan_memory

        capability, kernels = None, "cpu"
        if device.startswith("cuda"):
            import torch

            capability, kernels = tuple(torch.cuda.get_device_capability(device)), "cuda"
        p = plan_memory(cfg, num_labels=num_labels, compute_capability=capability, kernels=kernels)
    except Exception as exc:  # noqa: BLE001 - e.g. a model type the planner does not cover (it plans llama, bert, ...)
        return None, {"memory_plan_error": f"{type(exc).__name__}: {one_line(exc, 300)}"}
    return p.allocator_peak_mb, {"memory_plan": {**asdict(p), "kernels": kernels, "compute_capability": capability}}


def _execute(cfg: TrialConfig, *, reporter: Reporter, tracker: Tracker, out: Path | None, state: dict,
             fault: str | None, placement: dict[str, str]) -> None:
    import torch
    from peft import get_peft_model, prepare_model_for_kbit_training
    from transformers import set_seed

    from sweep import adapters
    from sweep.measure import inference
    from sweep.measure import precision as P
    from sweep.measure.gpu_share import GpuShare
    from sweep.measure.memory import PeakMemory
    from sweep.measure.params import count_params, weights_mb
    from sweep.models.loader import build_model, set_cpu_inference_packing
    from sweep.train import encode
    from sweep.train.engine import total_steps, train
    from sweep.train.evaluate import evaluate
    from sweep.train.prepare import prepare

    t, d, m = cfg.train, cfg.data, cfg.model
    phase = _Phases(state["phases"])
    device = resolve_device(t.device)
    if t.threads:
        torch.set_num_threads(t.threads)
    set_seed(t.seed)
    metrics, curves = state["metrics"], state["curves"]
    prep = prepare(cfg, device, placement)
    plan = adapters.plan(cfg.lora, prep.inventory)  # unknown targets / bad schedules fail here, before the real model
    predicted, memory_plan = predict_memory(cfg, device, prep.num_labels)  # setup time, before the peak is measured
    if predicted is not None:
        metrics["predicted_peak_memory_mb"] = predicted
    state["meta"] = {**prep.meta, "target_modules": len(plan.modules), "measure_precision": P.measure_precision(t.precision),
                     **memory_plan}
    _write(out, "meta.json", json.dumps(state["meta"], indent=2, sort_keys=True))
    steps = total_steps(t, len(prep.train_feats))

    def run_eval(model, positions: list[int] | None) -> dict[str, float]:
        feats, answers = prep.eval_part(positions)
        with P.measuring(t.precision, device):
            return evaluate(model, feats, task=d.task, tok=prep.tok, answers=answers, batch_size=t.eval_batch_size,
                            device=device, max_new_tokens=d.max_new_tokens, eos_id=prep.eos)

    def on_loss(step: int, loss: float) -> None:
        curves.setdefault("train_loss", []).append((step, loss))
        if math.isfinite(loss):
            tracker.log_metrics({"train_loss": loss}, step=step)

    def on_eval(step: int, ev: dict[str, float]) -> bool:
        for k in ("eval_accuracy", "eval_loss"):
            curves.setdefault(k, []).append((step, ev[k]))
        tracker.log_metrics({k: ev[k] for k in ("eval_accuracy", "eval_loss")}, step=step)
        metrics.update(ev)
        return reporter.report(step, ev)

    share = GpuShare.of(placement)  # a GPU shared with other workers: their latency timing never overlaps this work
    with share.working(), PeakMemory(device) as mem:
        base = build_model(m, task=d.task, num_labels=prep.num_labels, quant=cfg.quant, seed=t.seed, device=device,
                           gpus=len([g for g in str(placement.get("gpu", "")).split(",") if g.strip()]))
        if cfg.quant.enabled and cfg.quant.prepare_kbit:
            base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=t.gradient_checkpointing)
        if cfg.quant.enabled:
            set_cpu_inference_packing(base, False)
        set_seed(t.seed)  # adapter init independent of how many random numbers the base model drew
        model = get_peft_model(base, adapters.peft_config(cfg.lora, plan, task=d.task, total_steps=steps))
        mem.restart_peak()  # training peak: resident weights count, the loading spike does not
        counts = count_params(model)
        metrics.update(counts)
        metrics["weights_mb"] = weights_mb(model)
        if cfg.lora.method == "lora" and counts["adapter_params"] != plan.lora_params(cfg.lora.use_dora):
            raise RuntimeError(f"adapter has {counts['adapter_params']:.0f} params, plan says {plan.lora_params(cfg.lora.use_dora)}")
        faults.inject(model, fault)
        phase.end("setup")
        outcome = train(model, prep.train_feats, encode.Collator(prep.tok, causal=d.task != "classification"), cfg=t,
                        device=device, eval_fn=lambda: run_eval(model, prep.subset), on_eval=on_eval, on_loss=on_loss,
                        adalora=cfg.lora.method == "adalora", loraplus_lr_ratio=cfg.lora.loraplus_lr_ratio)
        state["phases"]["train"] = outcome.seconds
        state["phases"]["eval"] = outcome.eval_seconds
        state["phases"]["trainer_setup"] = outcome.setup_seconds
        phase.t = time.perf_counter()
        metrics.update({"train_steps": float(outcome.steps), "train_time_s": outcome.seconds,
                        "train_samples_per_s": outcome.samples / outcome.seconds,
                        "train_tokens_per_s": outcome.tokens / outcome.seconds, "train_loss": outcome.last_loss})
        if outcome.pruned_at is not None:
            metrics.update(mem.read().metrics())
            metrics["eval_time_s"] = outcome.eval_seconds
            raise Pruned(f"pruned at step {outcome.pruned_at} (eval_accuracy {metrics.get('eval_accuracy', float('nan')):.4f})")
        P.unwrap(model)  # the Trainer's autocast stays on the forward otherwise: every measurement below sets its own
        on_eval(outcome.steps, run_eval(model, None))
        phase.end("eval")
        metrics["eval_time_s"] = state["phases"]["eval"]
    state["meta"]["memory_kind"] = mem.reading.kind
    metrics.update(mem.reading.metrics())

    if out and t.save_adapter:
        faults.check_disk(fault, out / "adapter")
        model.save_pretrained(str(out / "adapter"))
        metrics["adapter_size_mb"] = (out / "adapter" / "adapter_model.safetensors").stat().st_size / MIB
    phase.end("save")

    model.eval()
    if cfg.quant.enabled:
        set_cpu_inference_packing(model, True)  # training is over: measure the real inference path
    batch = inference.eval_batch(prep, t.eval_batch_size, device)
    # unmerged and merged alike, at the config's precision; on a shared GPU, alone on it while timing
    with share.timing(), P.measuring(t.precision, device):
        metrics.update(inference.latency_metrics(model, batch, t, device, "latency"))
        if d.task != "classification":
            metrics.update(inference.generation_metrics(model, prep, t, d.max_new_tokens, device, "latency_per_token"))
        _, metrics["merge_max_abs_diff"] = inference.merge_check(model, batch)
    state["meta"].update(share.meta())
    phase.end("measure")


def format_metrics(result: TrialResult) -> str:
    """The metrics table of one trial, in the order of the metric table."""
    from sweep import metrics as mt

    lines = [f"status: {result.status.value}" + (f" ({result.error})" if result.error else ""),
             f"config hash: {result.config_hash}", f"{'metric':<26}{'value':>16}  {'unit':<12}better"]
    for m in mt.METRICS:
        if m.name in result.metrics:
            v = result.metrics[m.name]
            text = f"{v:,.0f}" if m.unit == "params" else f"{v:.6g}"
            lines.append(f"{m.name:<26}{text:>16}  {m.unit:<12}{m.direction.value}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`python -m sweep.trial [hydra overrides]`: run one trial and print its metrics."""
    import sys

    from sweep.config.compose import compose

    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print("usage: python -m sweep.trial [override ...]   e.g. model=minilm lora=qv lora.r=8 quant=nf4\n"
              "Runs one trial from the composed config and prints its metrics; outputs go to sweeps/single/<hash>/.")
        return 0
    from sweep.gpus import pin_one_gpu
    from sweep.quiet import quiet_libraries, quiet_transformers

    pinned = pin_one_gpu()  # before CUDA starts: with several GPUs visible the Trainer would wrap the model in
    if pinned:  # DataParallel (a bigger effective batch under the same hash, memory read on one GPU only)
        print(f"note: several GPUs visible; this trial uses one, CUDA_VISIBLE_DEVICES={pinned}", file=sys.stderr)
    quiet_libraries()
    quiet_transformers()
    try:
        run = compose(argv)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    h = config_hash(run.trial)
    out = Path(run.sweep.output_dir) / "single" / h
    print(f"trial {h}: model={run.trial.model.name} lora={run.trial.lora.method} r={run.trial.lora.r} "
          f"targets={run.trial.lora.targets} quant={run.trial.quant.method} -> {out}", flush=True)
    write_config(out, run.trial.to_dict())
    result = run_trial(run.trial, output_dir=out)
    print(format_metrics(result))
    return 0 if result.status is TrialStatus.COMPLETE else 1


if __name__ == "__main__":
    raise SystemExit(main())
