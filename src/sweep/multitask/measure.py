"""Measurements on one base + K adapters, in this process: correctness, switching, latency, mixed batches.

Correctness reuses the trial's own evaluation (`sweep.train.evaluate.evaluate`) on each
study's eval set, with the study's tokenisation, eval batch size and CPU thread count, so
that on CPU the served adapter must give the recorded accuracy and loss bit for bit.
Timings reuse `sweep.measure.latency.time_once`, interleave the two sides of every
comparison (a shared machine's load drifts), and carry a confidence interval of their
median (sweep.multitask.noise).
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass

from sweep.multitask import stack
from sweep.multitask.noise import Timing, compare_text, timing


@dataclass
class TaskData:
    study: str
    feats: list[dict]  # encoded eval examples of the study (input_ids, labels)
    eval_batch_size: int  # the study's train.eval_batch_size (evaluation and latency batch)


@dataclass
class Correctness:
    study: str
    recorded_accuracy: float  # eval_accuracy the study recorded for this adapter
    served_accuracy: float  # the same eval set through the shared base with this adapter active
    recorded_loss: float  # eval_loss recorded (nan when not recorded)
    served_loss: float  # eval_loss served
    eval_n: int  # eval examples
    exact: bool  # accuracy (and loss, when recorded) identical on CPU; within sweep.reproduce's GPU tolerance on GPU


@dataclass
class LatencyRow:
    study: str
    batch: int  # requests per forward
    unmerged: Timing  # one base + K adapters, this adapter active
    merged: Timing  # this adapter merged into its own copy of the base
    verdict: str  # the comparison in words, with the noise rule


@dataclass
class MixedBatch:
    rows: int  # requests in the batch (round robin over the tasks)
    path: str  # how it ran: PEFT adapter_names, with or without grouped heads
    max_abs_diff: float  # max |logit(mixed) - logit(single adapter, same batch)| over every row
    predictions_equal: bool  # argmax of every row equal to the single-adapter run
    exact: bool  # every row's logits bit-identical to the single-adapter run
    mixed: Timing  # one forward over the mixed batch
    grouped: Timing  # the same rows served task by task: set_adapter + one forward per task's rows
    verdict: str


def task_data(c, tok) -> TaskData:
    from sweep.data import load_records
    from sweep.train.encode import encode_classification

    d, t = c.config.data, c.config.train
    records = load_records(task=d.task, source=d.source, name=d.name, train_file=d.train_file, eval_file=d.eval_file,
                           train_split=d.train_split, eval_split=d.eval_split, text_field=d.text_field,
                           label_field=d.label_field, instruction_field=d.instruction_field, input_field=d.input_field,
                           output_field=d.output_field, train_size=d.train_size, eval_size=d.eval_size, seed=t.seed)
    return TaskData(c.study, encode_classification(records.eval, tok, d.max_seq_len), t.eval_batch_size)


def _threads(c) -> None:
    import torch

    from sweep.provenance import recorded_threads

    recorded = recorded_threads(c.meta) or c.config.train.threads
    if recorded:
        torch.set_num_threads(int(recorded))  # the trial's own thread count: CPU float sums depend on it


def _batch(feats: list[dict], tok, device: str) -> dict:
    from sweep.train.encode import Collator

    collate = Collator(tok, causal=False, counting=False)
    return {k: v.to(device) for k, v in collate(feats).items() if k != "labels"}


def correctness(model, chosen: list, data: dict[str, TaskData], tok, device: str) -> list[Correctness]:
    """Each adapter active in turn, its own eval set evaluated exactly as its trial did."""
    import math

    from sweep.measure.precision import measuring
    from sweep.models.loader import eos_token_id
    from sweep.reproduce import judge
    from sweep.train.evaluate import evaluate

    out = []
    for c in chosen:
        _threads(c)
        model.set_adapter(c.study, inference_mode=True)
        with measuring(c.config.train.precision, device):  # the precision its trial measured at (measure/precision.py)
            ev = evaluate(model, data[c.study].feats, task="classification", tok=tok, answers=None,
                          batch_size=data[c.study].eval_batch_size, device=device,
                          max_new_tokens=c.config.data.max_new_tokens, eos_id=eos_token_id(tok))
        acc, loss = float(c.metrics["eval_accuracy"]), float(c.metrics.get("eval_loss", math.nan))
        gpu = device.startswith("cuda")  # CPU: bit for bit; GPU: the tolerance reproduce applies to a rerun
        exact = judge("eval_accuracy", acc, ev["eval_accuracy"], gpu) and (
            math.isnan(loss) or judge("eval_loss", loss, ev["eval_loss"], gpu))
        out.append(Correctness(c.study, acc, ev["eval_accuracy"], loss, ev["eval_loss"], len(data[c.study].feats), exact))
    return out


def switching(model, names: list[str], iters: int) -> Timing:
    """set_adapter time over `iters` switches, each to a different adapter than the active one."""
    for i in range(len(names)):  # warm-up: every adapter once
        model.set_adapter(names[i], inference_mode=True)
    samples = []
    for i in range(iters):
        name = names[i % len(names)] if len(names) > 1 else names[0]
        t0 = time.perf_counter()
        model.set_adapter(name, inference_mode=True)
        samples.append((time.perf_counter() - t0) * 1e3)
    return timing(samples)


def _paired(fns: dict[str, object], device: str, warmup: int, iters: int) -> dict[str, Timing]:
    """Time several callables interleaved (one call each per round, order alternating), so that a change of the
    machine's load during the measurement hits every one of them alike instead of biasing the comparison."""
    import torch

    from sweep.measure.latency import time_once

    samples: dict[str, list[float]] = {name: [] for name in fns}
    with torch.no_grad():
        for fn in fns.values():
            for _ in range(warmup):
                fn()
        names = list(fns)
        for i in range(iters):
            for name in (names if i % 2 == 0 else names[::-1]):
                samples[name].append(time_once(fns[name], device))
    return {name: timing(s) for name, s in samples.items()}


def latencies(model, chosen: list, data: dict[str, TaskData], tok, device: str, *, warmup: int,
              iters: int) -> list[LatencyRow]:
    """Per task, batch of 1 and the eval batch: unmerged (this adapter active on the shared base) vs merged, both at
    the precision the task's trial measured at (sweep.measure.precision)."""
    from sweep.measure.precision import measuring

    rows = []
    stack.inference_packing(model, True)  # quantized bases: the real inference path, as the trial's timings
    for c in chosen:
        _threads(c)
        feats = data[c.study].feats
        batches = {n: _batch(feats[:n], tok, device) for n in dict.fromkeys([1, min(data[c.study].eval_batch_size, len(feats))])}
        model.set_adapter(c.study, inference_mode=True)
        merged_model = stack.load_merged(c, device)
        stack.inference_packing(merged_model, True)
        for n, b in batches.items():
            with measuring(c.config.train.precision, device):  # unmerged and merged at the study's one precision
                t = _paired({"unmerged": lambda b=b: model(**b).logits,
                             "merged": lambda b=b, m=merged_model: m(**b).logits}, device, warmup, iters)
            rows.append(LatencyRow(c.study, n, t["unmerged"], t["merged"],
                                   compare_text("unmerged", t["unmerged"], "merged", t["merged"])))
        del merged_model
        gc.collect()
    stack.inference_packing(model, False)
    return rows


def mixed_batch(model, chosen: list, data: dict[str, TaskData], tok, device: str, sizes: dict[str, int], *, rows: int,
                warmup: int, iters: int) -> MixedBatch:
    """A batch whose rows use the K adapters round robin, against single-adapter runs of the same batch, row by row."""
    import torch

    picks: list[tuple[str, dict]] = []
    for i in range(rows):
        c = chosen[i % len(chosen)]
        feats = data[c.study].feats
        picks.append((c.study, feats[(i // len(chosen)) % len(feats)]))
    names = [n for n, _ in picks]
    batch = _batch([f for _, f in picks], tok, device)
    _threads(chosen[0])
    from sweep.measure.precision import measuring

    precision = chosen[0].config.train.precision  # the mixed batch, its references and both timings at one precision
    reference = {}
    with torch.no_grad(), measuring(precision, device):
        for c in chosen:
            model.set_adapter(c.study, inference_mode=True)
            reference[c.study] = model(**batch).logits
        got = stack.mixed_forward(model, batch, names, sizes)
    want = [reference[n][i, : sizes[n]] for i, n in enumerate(names)]
    diff = max(float((g - w).abs().max()) for g, w in zip(got, want))
    preds = all(int(g.argmax()) == int(w.argmax()) for g, w in zip(got, want))
    exact = all(torch.equal(g, w) for g, w in zip(got, want))
    grouped_heads = len(set(sizes[n] for n in names)) > 1
    path = "PEFT adapter_names" + (" + rows grouped by adapter for the heads" if grouped_heads else "")
    per_task = {c.study: _batch([f for n, f in picks if n == c.study], tok, device) for c in chosen}

    def grouped_run():
        for c in chosen:
            model.set_adapter(c.study, inference_mode=True)
            model(**per_task[c.study]).logits

    with measuring(precision, device):
        t = _paired({"mixed": lambda: stack.mixed_forward(model, batch, names, sizes), "grouped": grouped_run},
                    device, warmup, iters)
    mixed, grouped = t["mixed"], t["grouped"]
    return MixedBatch(rows, path, diff, preds, exact, mixed, grouped,
                      compare_text("mixed batch", mixed, "task by task", grouped))
