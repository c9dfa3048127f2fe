"""The report section "Serving K tasks", written with the report's blocks and writers.

    reports/multitask-<study>+<study>.../{report.md, report.html, serving.json}

The blocks (Heading, Text, Table) and the Markdown/HTML writers are those of
sweep.report.render, so the section reads like the rest of the report and can be
appended to a study's block list as it is (`serving_blocks(result, cost)`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pandas as pd

from sweep.config.cost import INPUT_UNITS
from sweep.names import joined
from sweep.report.recommend import money
from sweep.report.render import Heading, Table, Text, to_html, to_markdown


def _ms(t) -> str:
    return f"{t.p50_ms:.3g} [{t.ci_low_ms:.3g}, {t.ci_high_ms:.3g}]"


def _num(v: float, digits: str = ".4f") -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, digits)


def folder_name(studies: list[str]) -> str:
    """`multitask-<study>+<study>...`: each study name made one safe folder part (sweep/names.py), the whole
    shortened with a hash when it would be too long a file name."""
    return joined("multitask-", studies)


def _adapters(result) -> pd.DataFrame:
    return pd.DataFrame([{"study (adapter name)": a.study, "task (data.name)": a.data, "labels": str(a.labels),
                          "config hash": a.config_hash, "chosen": a.how, "trial": "–" if a.trial_number is None else f"#{a.trial_number}",
                          "adapter": a.lora, "files from": a.source} for a in result.adapters])


def _correctness(result) -> pd.DataFrame:
    return pd.DataFrame([{"study": c.study, "recorded eval_accuracy (fraction)": _num(c.recorded_accuracy),
                          "served eval_accuracy (fraction)": _num(c.served_accuracy),
                          "recorded eval_loss (nats)": _num(c.recorded_loss, ".10g"),
                          "served eval_loss (nats)": _num(c.served_loss, ".10g"), "eval examples": str(c.eval_n),
                          "identical": "yes" if c.exact else "NO"} for c in result.correctness])


def _memory(result) -> list:
    m = result.memory
    if m is None:
        return [Text("Not measured (--no-memory).")]
    k = m.k
    frame = pd.DataFrame([
        {"layout": "one base model", "resident (MiB)": f"{m.base_mb:,.1f}", "loading peak (MiB)": "–"},
        {"layout": f"one base + {k} adapters", "resident (MiB)": f"{m.stack_mb:,.1f}", "loading peak (MiB)": f"{m.stack_peak_mb:,.1f}"},
        {"layout": f"{k} merged models", "resident (MiB)": f"{m.merged_mb:,.1f}", "loading peak (MiB)": f"{m.merged_peak_mb:,.1f}"},
    ])
    p = result.pricing
    text = (f"Anonymous resident memory (RssAnon) above each process's baseline after importing torch, transformers and "
            f"peft, heap trimmed, each layout in a fresh process. One adapter adds {m.adapter_mb:,.2f} MiB to the base; one "
            f"merged model takes {m.merged_each_mb:,.1f} MiB.")
    if p.adapters_fit is not None:
        text += (f" On a device with {p.device_memory_mb:,.0f} MiB, one base + {p.adapters_fit:,} adapters fit, or "
                 f"{p.merged_fit:,} merged models (weights only; activations and the serving runtime come on top).")
    return [Text(text), Table(frame)]


def _load_text(result) -> str:
    load = result.extra.get("load_avg_1min")
    if not load:
        return ""
    return (f"Machine load average (1 min) {load[0]:.2f} when the timings started and {load[-1]:.2f} when they ended "
            f"({result.device}); above the core count, other processes shared the CPU and absolute times are inflated.")


def _latency(result) -> list:
    rows = [{"study": r.study, "batch (requests)": str(r.batch), "unmerged p50 [95% CI] (ms)": _ms(r.unmerged),
             "merged p50 [95% CI] (ms)": _ms(r.merged), "unmerged p95 (ms)": f"{r.unmerged.p95_ms:.3g}",
             "merged p95 (ms)": f"{r.merged.p95_ms:.3g}",
             "verdict": r.verdict.split(": ", 1)[-1]} for r in result.latency]
    s = result.switch
    n = result.latency[0].unmerged.n if result.latency else 0
    return [Text(f"Adapter switch (`set_adapter`): p50 {s.p50_ms:.3g} ms, p95 {s.p95_ms:.3g} ms, 95% interval of the median "
                 f"[{s.ci_low_ms:.3g}, {s.ci_high_ms:.3g}] ms over {s.n} switches. Per-request latency: {n} timed forwards "
                 f"per cell after warm-up, {result.threads} CPU thread(s); the interval of each median is distribution-free "
                 "(order statistics), and two medians are called different only when the 95% interval of their difference "
                 "excludes zero (sweep/noise.py); the two sides of each comparison are timed interleaved. " + _load_text(result)),
            Table(pd.DataFrame(rows))]


def _mixed(result) -> list:
    m = result.mixed
    reason = result.features.get("mixed_batch", "")
    if m is None:
        return [Text(f"Not measured: {reason or 'disabled'}.")]
    text = (f"One batch of {m.rows} requests, rows assigned to the {len(result.studies)} adapters round robin, run through "
            f"{m.path}, compared row by row with single-adapter runs of the same batch: "
            + ("every row's logits are bit-identical" if m.exact else
               f"max |logit difference| {m.max_abs_diff:.3g}, predictions {'all equal' if m.predictions_equal else 'DIFFER'}")
            + f". Latency: {m.verdict}.")
    frame = pd.DataFrame([{"serving": "one mixed batch", "p50 [95% CI] (ms)": _ms(m.mixed), "p95 (ms)": f"{m.mixed.p95_ms:.3g}"},
                          {"serving": f"task by task ({len(result.studies)} set_adapter + forward)",
                           "p50 [95% CI] (ms)": _ms(m.grouped), "p95 (ms)": f"{m.grouped.p95_ms:.3g}"}])
    return [Text(text), Table(frame)]


def _cost(result, cost) -> list:
    p = result.pricing
    k = len(result.studies)
    per_task = pd.DataFrame([{"study": t.study, "share of requests": f"{t.share:.0%}", "requests/month": f"{t.requests:,.0f}",
                              "unmerged p50 (ms/batch)": f"{t.unmerged_ms:.3g}", "merged p50 (ms/batch)": f"{t.merged_ms:.3g}",
                              "merged busy (device-h/month)": f"{t.merged_hours:.3g}", "merged devices": str(t.merged_devices)}
                             for t in p.tasks])
    deployments = pd.DataFrame([
        {"deployment": f"one base + {k} adapters", "devices (always on)": str(p.shared_devices),
         "busy (device-h/month)": f"{p.shared_hours:.3g}", "serving (USD/month)": money(p.shared_monthly_usd),
         "compute only (USD/month)": money(p.shared_compute_usd)},
        {"deployment": f"{k} merged models", "devices (always on)": str(p.merged_devices),
         "busy (device-h/month)": f"{sum(t.merged_hours for t in p.tasks):.3g}", "serving (USD/month)": money(p.merged_monthly_usd),
         "compute only (USD/month)": money(p.merged_compute_usd)},
    ])
    inputs = pd.DataFrame([{"key": f"cost.{f.name}", "value": "null" if getattr(cost, f.name) is None else str(getattr(cost, f.name)),
                            "unit": INPUT_UNITS.get(f.name, "")} for f in dataclasses.fields(cost)
                           if f.name in ("hardware", "price_per_device_hour", "monthly_requests", "batch_size_inference")])
    return [Text(f"Requests per priced batch: {p.batch:g}; a deployment is always on (730 h/month) and needs "
                 "max(1, ceil(busy hours / 730)) devices; the shared base pays one set_adapter per batch. Formulas: "
                 "sweep/multitask/pricing.py."), Table(per_task), Table(deployments), Table(inputs)]


def serving_blocks(result, cost) -> list:
    """The section's blocks (level-2 heading first), ready for to_markdown / to_html or a report's block list."""
    k = len(result.studies)
    b = result.base
    blocks: list = [Heading(f"Serving {k} tasks"),
                    Text(f"One base model ({b['name']}, quantization {b['quant']}, fingerprint {b.get('fingerprint') or '–'}) "
                         f"with {k} named PEFT adapters, one per study ({', '.join(result.studies)}), against {k} merged models. "
                         f"Measured {result.measured_at} on {result.device}."
                         + (f" MLflow run {result.run_id}." if result.run_id else "")),
                    Heading("Recommendation", 3), Text(result.recommendation),
                    Heading("Adapters", 3), Table(_adapters(result)),
                    Heading("Correctness: each adapter on the shared base", 3),
                    Text("Each adapter active in turn (`set_adapter`), its study's eval set evaluated as its trial did "
                         "(same tokenisation, eval batch, CPU threads); the study's recorded figures must come back exactly."),
                    Table(_correctness(result)),
                    Heading("Memory", 3), *_memory(result),
                    Heading("Switching and latency", 3), *_latency(result),
                    Heading("Mixed batches", 3), *_mixed(result),
                    Heading("Cost", 3), *_cost(result, cost)]
    feats = pd.DataFrame([{"feature": f, "status": s} for f, s in result.features.items()])
    blocks += [Heading("What PEFT does not support here", 3),
               Table(feats, empty="(nothing: every feature ran natively)")]
    return blocks


def write(result, cost, out_root: Path | str) -> list[Path]:
    """reports/multitask-<studies>/{report.md, report.html, serving.json}."""
    folder = Path(out_root) / folder_name(result.studies)
    folder.mkdir(parents=True, exist_ok=True)
    title = f"lorasweep: serving {', '.join(result.studies)}"
    blocks = [Heading(title, 1), *serving_blocks(result, cost)]
    paths = [folder / "report.md", folder / "report.html", folder / "serving.json"]
    paths[0].write_text(to_markdown(blocks), encoding="utf-8")
    paths[1].write_text(to_html(blocks, title), encoding="utf-8")
    paths[2].write_text(json.dumps(result.to_dict(), indent=2, default=str, allow_nan=True), encoding="utf-8")
    return paths
