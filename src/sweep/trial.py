"""One trial: a composed config in, a typed TrialResult out.

    run_trial(cfg) -> TrialResult(status, metrics, error)

Loads data and the base model, attaches the adapter, trains, evaluates, saves the
adapter, and measures latency unmerged and after merge_and_unload. Exceptions,
OOM and non-finite losses become a FAILED status with a one-line reason; a
pruner's stop becomes PRUNED. Nothing raises out of here except KeyboardInterrupt.
"""

from __future__ import annotations

import functools
import gc
import json
import math
import time
import traceback
from pathlib import Path
from typing import Any

from sweep.config.errors import ConfigError
from sweep.config.hashing import config_hash
from sweep.config.schema import TrialConfig
from sweep.results import TrialResult, TrialStatus
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


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)) or "out of memory" in str(exc).lower()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:500] or type(exc).__name__


def _count_params(model) -> dict[str, float]:
    trainable = total = adapter = 0
    for name, p in model.named_parameters():
        qs = getattr(p, "quant_state", None)
        n = math.prod(qs.shape) if qs is not None else p.numel()
        total += n
        if p.requires_grad:
            trainable += n
        if "lora_" in name:
            adapter += n
    return {"trainable_params": float(trainable), "total_params": float(total), "adapter_params": float(adapter),
            "trainable_ratio": trainable / total if total else 0.0}


def _inject(model, fault: str | None) -> None:
    """Test hook for fault handling: the first training forward raises a CUDA OOM, yields NaN, or SIGKILLs the process."""
    if not fault:
        return
    import torch

    def hook(_module, _inputs, output):
        if not _module.training:
            return output
        if fault == "oom":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected fault)")
        if fault == "kill":
            import os
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        output.logits = output.logits * float("nan")
        if getattr(output, "loss", None) is not None:
            output.loss = output.loss * float("nan")
        return output

    model.register_forward_hook(hook)


def run_trial(cfg: TrialConfig, *, reporter: Reporter | None = None, tracker: Tracker | None = None,
              output_dir: Path | None = None, max_trainable_params: int | None = None,
              fault: str | None = None) -> TrialResult:
    """Run one trial; never raises for a failure of the trial itself."""
    reporter = reporter or NullReporter()
    tracker = tracker or NullTracker()
    h = config_hash(cfg)
    t0 = time.perf_counter()
    out = Path(output_dir) if output_dir else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {"curves": {}, "metrics": {}, "meta": {}}
    try:
        _execute(cfg, reporter=reporter, tracker=tracker, out=out, state=state,
                 max_trainable_params=max_trainable_params, fault=fault)
        result = TrialResult(TrialStatus.COMPLETE, state["metrics"], None)
    except Pruned as exc:
        result = TrialResult(TrialStatus.PRUNED, state["metrics"], str(exc))
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - a trial's failure is a status, never a dead sweep
        if isinstance(exc, ConfigError):
            reason = "config: " + "; ".join(exc.problems)
        elif _is_oom(exc):
            reason = f"OOM: {_one_line(exc)}"
        elif type(exc).__name__ == "NonFiniteLoss":
            reason = f"NaN loss: {_one_line(exc)}"
        else:
            reason = f"{type(exc).__name__}: {_one_line(exc)}"
        if out:
            (out / "error.txt").write_text("".join(traceback.format_exception(exc)))
        result = TrialResult(TrialStatus.FAILED, state["metrics"], reason)
    finally:
        _release_memory()
    result.config_hash = h
    result.curves = state["curves"]
    result.meta = state["meta"]
    result.duration_s = time.perf_counter() - t0
    result.output_dir = str(out) if out else None
    if out:
        result.save(out / "result.json")
    return result


def _release_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def _execute(cfg: TrialConfig, *, reporter: Reporter, tracker: Tracker, out: Path | None, state: dict,
             max_trainable_params: int | None, fault: str | None) -> None:
    import torch
    from transformers import set_seed

    from sweep import adapters, provenance
    from sweep.data import load_records
    from sweep.measure.generation import per_token_latency
    from sweep.measure.latency import time_batches
    from sweep.measure.memory import PeakMemory
    from sweep.models.loader import build_model, eos_token_id, inventory, load_tokenizer, set_cpu_inference_packing
    from sweep.train import encode
    from sweep.train.engine import total_steps, train
    from sweep.train.evaluate import evaluate, generate

    t, d, m = cfg.train, cfg.data, cfg.model
    device = resolve_device(t.device)
    if t.threads:
        torch.set_num_threads(t.threads)
    set_seed(t.seed)
    metrics, curves = state["metrics"], state["curves"]

    records = load_records(task=d.task, source=d.source, name=d.name, train_file=d.train_file, eval_file=d.eval_file,
                           train_split=d.train_split, eval_split=d.eval_split, text_field=d.text_field,
                           label_field=d.label_field, instruction_field=d.instruction_field, input_field=d.input_field,
                           output_field=d.output_field, train_size=d.train_size, eval_size=d.eval_size, seed=t.seed)
    num_labels = len(records.label_names) if records.label_names else None
    tok = load_tokenizer(m)
    eos = eos_token_id(tok)
    inv = inventory(m, d.task, num_labels)
    plan = adapters.plan(cfg.lora, inv)  # unknown targets / bad schedules fail here, before the real model is built
    state["meta"] = {**provenance.describe(device), "config_hash": config_hash(cfg), "seed": t.seed,
                     "model_fingerprint": provenance.model_fingerprint(m, t.seed), "data_fingerprint": records.fingerprint,
                     "num_layers": inv.num_layers, "target_modules": len(plan.modules), "memory_kind": None}
    if out:
        (out / "meta.json").write_text(json.dumps(state["meta"], indent=2, sort_keys=True))

    if d.task == "classification":
        train_feats = encode.encode_classification(records.train, tok, d.max_seq_len)
        eval_feats = encode.encode_classification(records.eval, tok, d.max_seq_len)
        answers = None
    else:
        fmt = state["meta"]["prompt_format"] = encode.resolve_prompt_format(d.prompt_format, tok)
        train_feats = encode.encode_instruction(records.train, tok, d.max_seq_len, eos, fmt)
        eval_feats = encode.encode_instruction(records.eval, tok, d.max_seq_len, eos, fmt)
        answers = [r["output"] for r in records.eval]
        if out:
            (out / "meta.json").write_text(json.dumps(state["meta"], indent=2, sort_keys=True))
    steps = total_steps(t, len(train_feats))

    def run_eval(model) -> dict[str, float]:
        return evaluate(model, eval_feats, task=d.task, tok=tok, answers=answers, batch_size=t.eval_batch_size,
                        device=device, max_new_tokens=d.max_new_tokens, eos_id=eos)

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

    from peft import get_peft_model, prepare_model_for_kbit_training

    with PeakMemory(device) as mem:
        base = build_model(m, task=d.task, num_labels=num_labels, quant=cfg.quant, seed=t.seed, device=device)
        if cfg.quant.enabled and cfg.quant.prepare_kbit:
            base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=t.gradient_checkpointing)
        if cfg.quant.enabled:
            set_cpu_inference_packing(base, False)
        set_seed(t.seed)  # adapter init independent of how many random numbers the base model drew
        model = get_peft_model(base, adapters.peft_config(cfg.lora, plan, task=d.task, total_steps=steps))
        mem.restart_peak()  # training peak: resident weights count, the loading spike does not
        counts = _count_params(model)
        metrics.update(counts)
        if cfg.lora.method == "lora" and counts["adapter_params"] != plan.lora_params(cfg.lora.use_dora):
            raise RuntimeError(f"adapter has {counts['adapter_params']:.0f} params, plan says {plan.lora_params(cfg.lora.use_dora)}")
        if max_trainable_params is not None and counts["trainable_params"] > max_trainable_params:
            raise Pruned(f"over budget: {counts['trainable_params']:.0f} trainable params > sweep.max_trainable_params={max_trainable_params}")
        _inject(model, fault)
        collator = encode.Collator(pad_id=tok.pad_token_id, causal=d.task != "classification")
        outcome = train(model, train_feats, collator, cfg=t, device=device, eval_fn=lambda: run_eval(model),
                        on_eval=on_eval, on_loss=on_loss, adalora=cfg.lora.method == "adalora")
        metrics.update({"train_steps": float(outcome.steps), "train_time_s": outcome.seconds,
                        "train_samples_per_s": outcome.samples / outcome.seconds,
                        "train_tokens_per_s": outcome.tokens / outcome.seconds, "train_loss": outcome.last_loss})
        if outcome.pruned_at is not None:
            reading = mem.read()
            metrics.update({"peak_memory_mb": reading.peak_mb, "peak_reserved_mb": reading.peak_reserved_mb})
            raise Pruned(f"pruned at step {outcome.pruned_at} (eval_accuracy {metrics.get('eval_accuracy', float('nan')):.4f})")
        final = run_eval(model)
        on_eval(outcome.steps, final)
    reading = mem.reading
    state["meta"]["memory_kind"] = reading.kind
    metrics.update({"peak_memory_mb": reading.peak_mb, "peak_reserved_mb": reading.peak_reserved_mb})

    if out and t.save_adapter:
        model.save_pretrained(str(out / "adapter"))
        st = out / "adapter" / "adapter_model.safetensors"
        metrics["adapter_size_mb"] = st.stat().st_size / MIB

    # latency: one eval batch, unmerged vs merged
    collate = encode.Collator(pad_id=tok.pad_token_id, causal=d.task != "classification", counting=False)
    batch = {k: v.to(device) for k, v in collate(eval_feats[: t.eval_batch_size]).items() if k != "labels"}
    model.eval()
    if cfg.quant.enabled:
        set_cpu_inference_packing(model, True)  # training is over: measure the real inference path
    causal = d.task != "classification"
    per_token = functools.partial(per_token_latency, feats=eval_feats, pad_id=tok.pad_token_id, device=device,
                                  new_tokens=d.max_new_tokens, warmup=t.latency_warmup, iters=t.latency_iters)
    with torch.no_grad():
        forward = lambda mdl: mdl(**batch).logits  # noqa: E731
        unmerged_logits = forward(model).float()
        lat = time_batches(lambda: forward(model), device=device, warmup=t.latency_warmup, iters=t.latency_iters)
        if causal:
            metrics["latency_per_token_ms"] = per_token(model).p50_ms
        merged = model.merge_and_unload()
        merged.eval()
        merged_logits = forward(merged).float()
        mlat = time_batches(lambda: forward(merged), device=device, warmup=t.latency_warmup, iters=t.latency_iters)
    metrics.update({"latency_p50_ms": lat.p50_ms, "latency_p95_ms": lat.p95_ms, "merged_latency_p50_ms": mlat.p50_ms,
                    "merged_latency_p95_ms": mlat.p95_ms,
                    "merge_max_abs_diff": float((unmerged_logits - merged_logits).abs().max())})
    if causal:
        metrics["merged_latency_per_token_ms"] = per_token(merged).p50_ms
        _, n_tokens, seconds = generate(merged, eval_feats[: t.eval_batch_size], tok=tok, device=device,
                                        max_new_tokens=d.max_new_tokens, eos_id=eos)
        metrics["generation_tokens_per_s"] = n_tokens / seconds
    tracker.log_metrics(dict(metrics))


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
    from sweep.quiet import quiet_libraries

    quiet_libraries()
    try:
        run = compose(argv)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    h = config_hash(run.trial)
    out = Path(run.sweep.output_dir) / "single" / h
    print(f"trial {h}: model={run.trial.model.name} lora={run.trial.lora.method} r={run.trial.lora.r} "
          f"targets={run.trial.lora.targets} quant={run.trial.quant.method} -> {out}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(_yaml(run.trial.to_dict()))
    result = run_trial(run.trial, output_dir=out)
    print(format_metrics(result))
    return 0 if result.status is TrialStatus.COMPLETE else 1


def _yaml(d: dict) -> str:
    import yaml

    return yaml.safe_dump(d, sort_keys=False)


if __name__ == "__main__":
    raise SystemExit(main())
