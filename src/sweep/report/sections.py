"""The report's sections, each a list of blocks: the question (arms and budgets), Pareto frontiers, noise, the
recommendation, cost and ROI, memory predicted against measured."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd

from sweep import metrics as mt
from sweep.config.cost import INPUT_UNITS, CostConfig
from sweep.noise import beyond_noise
from sweep.report import cost as cst
from sweep.report import plots, stats, tables
from sweep.report.blocks import Heading, Image, Table, Text
from sweep.report.load import Study
from sweep.report.pareto import frontier_mask, order_best_first
from sweep.report.recommend import Recommendation, money

# Pareto plots: eval_accuracy against each of these (training cost is derived from train_time_s). The merged
# latency is not among them: every config of one baseline shares it (a merged adapter adds no compute).
PARETO_X = ("trainable_ratio", "latency_p50_ms", "peak_memory_mb", "training_cost_usd")
Y = "eval_accuracy"
COST_TABLE = ("training_cost_usd", "inference_usd_per_million", "monthly_inference_usd", "monthly_total_usd",
              "monthly_benefit_usd", "net_monthly_usd", "roi", "payback_months")
NOISY = ("latency_p50_ms", "peak_memory_mb", "train_time_s", "train_samples_per_s", "eval_loss")


def question(study: Study, frame: pd.DataFrame, folder: Path) -> tuple[list, list[Path]]:
    arms = bool(study.arms) and "arm" in frame and frame["arm"].astype(str).ne("").any()
    by = ["arm"] if arms else [c for c in study.group_by if c in frame]
    missing = [c for c in study.group_by if c not in frame and not arms]
    blocks: list = [Heading(f"The experiment's question: by {', '.join(study.group_by)}")]
    pngs: list[Path] = []
    if arms:
        blocks.append(Text("Each arm of the question had an equal budget of trials and an Optuna sampler (and pruner) of its "
                           "own, so every arm was tuned as hard as the others. Per arm: its budget, trial runs, n completed "
                           "(reused copies left out), trials that did not complete, and best / mean / std / spread of "
                           "eval_accuracy; cost columns are means."))
    elif by:
        blocks.append(Text("Per group: trial runs, n completed (reused copies left out), trials that did not complete, and "
                           "best / mean / std / spread of eval_accuracy over the completed ones; cost columns are means."))
    if missing:
        blocks.append(Text(f"Not recorded as a param of any trial: {', '.join(missing)}."))
    if by:
        table = tables.group_table(frame, by)
        if arms:
            budgets = {a["arm"]: a["budget"] for a in study.arms}
            table.insert(1, "budget", [budgets.get(a, np.nan) for a in table["arm"]])
        blocks.append(Table(table))
        done = stats.measured(frame)
        if not done.empty and done[Y].notna().any():
            png = plots.group_plot(done, by, Y, folder / f"groups_{Y}.png", f"{Y} by {', '.join(by)}")
            pngs.append(png)
            blocks.append(Image(png, f"{Y} by {', '.join(by)}"))
    for axis in tables.other_axes(frame, [*by, *study.group_by]):
        blocks += [Heading(f"By {axis}", 3), Table(tables.group_table(frame, [axis]))]
    return blocks, pngs


def pareto(points: pd.DataFrame, folder: Path, objectives: list[str]) -> tuple[list, list[Path]]:
    blocks: list = [Heading("Pareto frontiers"),
                    Text("Each point is one config (seeds of a config folded into their mean; bars show the seed range). "
                         "Red points are non-dominated: no other config is at least as good on both axes and better on one; "
                         "grey points are dominated. Directions come from sweep/metrics.py. A point on a frontier is not "
                         "necessarily better beyond the noise: see the noise section.")]
    pngs: list[Path] = []
    for x in PARETO_X:
        blocks.append(Heading(f"{Y} vs {x}", 3))
        if x not in points or points[x].notna().sum() == 0 or points.empty:
            blocks.append(Text(f"No completed trial recorded {x}; no frontier."))
            continue
        have = points[points[x].notna() & points[Y].notna()]
        mask = frontier_mask(have, [Y, x], [mt.direction(Y), cst.cost_direction(x)])
        png = plots.pareto_plot(have, x, Y, mask, folder / f"pareto_{x}.png",
                                f"{Y} ({mt.direction(Y).value}) vs {x} ({cst.cost_direction(x).value})")
        pngs.append(png)
        blocks.append(Image(png, f"{Y} vs {x}"))
        front = have[mask].sort_values(x, kind="stable")
        blocks.append(Table(front[tables.point_columns(front, [x])]))
    dims = [m for m in dict.fromkeys([Y, *objectives]) if m in points]
    if len(dims) > 1 or dims != [Y]:
        have = points.dropna(subset=dims)
        if not have.empty:
            mask = frontier_mask(have, dims)
            blocks.append(Heading("Frontier over the study objectives: " + ", ".join(dims), 3))
            front = have[mask].sort_values(dims[-1], kind="stable")
            blocks.append(Table(front[tables.point_columns(have, dims)]))
    return blocks, pngs


def noise(points: pd.DataFrame, study: Study) -> list:
    blocks: list = [Heading("Noise: are the top configs distinguishable?")]
    verdict = stats.noise_check(points, mt.direction(Y))
    if verdict is None:
        return blocks + [Text("No completed trial with an accuracy.")]
    blocks += [Text(verdict.text + " Intervals: Wilson score, 95%, on eval_samples examples (seeds pooled); a gap's "
                                 "interval combines the two configs' (sweep/noise.py)."),
               Table(verdict.table)]
    seeds = tables.seeds_table(points)
    if seeds.empty:
        blocks.append(Text("Every config ran with a single seed: the spread between seeds is unknown; the binomial "
                           "interval above is the only noise estimate."))
    else:
        blocks += [Heading("Configs run with several seeds", 3), Table(seeds)]
    blocks += [Heading("Measured metrics: spread across configs against their noise", 3),
               Text("For each measured metric: its noise rule (sweep/metrics.py), the lowest and highest config, and "
                    "whether those two differ beyond the noise. Where they do not, no config is better than another on "
                    "that axis and the report claims no difference."), Table(spread_table(points))]
    blocks.append(Text(_merged_text(study)))
    return blocks


def spread_table(points: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for name in NOISY:
        if name not in points or points[name].notna().sum() < 2:
            continue
        m = mt.get(name)
        have = points[points[name].notna()]
        lo, hi = have.loc[have[name].idxmin()], have.loc[have[name].idxmax()]
        ci = [tuple(float(p.get(c, math.nan)) for c in mt.interval_names(name)) for p in (lo, hi)]
        differ = beyond_noise(name, float(lo[name]), float(hi[name]), ci[0], ci[1])
        rule = {mt.Noise.INTERVAL: f"95% interval of the difference, and > {m.rel_noise:.0%}",
                mt.Noise.RELATIVE: f"> {m.rel_noise:.0%}"}.get(m.noise, m.noise.value)
        rows.append({"metric": name, "unit": m.unit, "noise rule": rule, "lowest": float(lo[name]), "lowest config": lo["trials"],
                     "highest": float(hi[name]), "highest config": hi["trials"], "beyond noise": "yes" if differ else "no"})
    return pd.DataFrame(rows)


def _merged_text(study: Study) -> str:
    if not study.baselines:
        return ("No baseline run was recorded (sweep.baseline=false, or a study from before baselines): merged latency "
                "was measured per trial, and its differences are noise (a merged adapter adds no compute).")
    parts = []
    for key, m in study.baselines.items():
        lo, hi = m.get("merged_latency_p50_ms_ci_low", math.nan), m.get("merged_latency_p50_ms_ci_high", math.nan)
        parts.append(f"{m.get('merged_latency_p50_ms', math.nan):.4g} ms/batch [95% {lo:.4g}, {hi:.4g}] (baseline {key})")
    return ("Merged latency is the base model's, measured once per baseline: " + "; ".join(parts) + ". merge_and_unload "
            "folds a LoRA, DoRA or AdaLoRA adapter into the base weights and leaves the base model's layers and shapes, so "
            "every merged config serves at the same latency and the same inference cost; only the adapter-active "
            "latency (latency_p50_ms) differs between configs.")


def memory_prediction(frame: pd.DataFrame) -> list:
    """Predicted against measured peak memory per trial, and the median absolute relative error over the trials
    whose measured peak is the one the plan predicts (CUDA allocated)."""
    blocks: list = [Heading("Memory: predicted vs measured")]
    judged, unjudged = tables.memory_prediction_tables(frame)
    if judged.empty and unjudged.empty:
        return blocks + [Text("No trial recorded predicted_peak_memory_mb (trials from before the trial logged its "
                              "memory plan, or of a model sweep.plan does not plan: meta.json's `memory_plan_error` "
                              "says why).")]
    blocks.append(Text("predicted_peak_memory_mb is sweep.plan's allocator peak for the trial's config and device, "
                       "from the config alone (weights, adapter, gradients, optimizer state, activations, cuBLAS "
                       "workspace; docs/memory-planning.md); meta.json's `memory_plan` has its parts."))
    if not judged.empty:
        errors = judged[tables.RELATIVE_ERROR].dropna()
        overall = (f"median absolute relative error {float(errors.abs().median()):.1%} over "
                   f"{len(errors)} trial{'' if len(errors) == 1 else 's'}" if len(errors)
                   else "no trial measured a peak to judge it against (every one failed before the end of training)")
        blocks += [Text("GPU trials (memory kind CUDA allocated): the measured peak_memory_mb is "
                        "torch.cuda.max_memory_allocated over training, the figure the plan predicts; relative error = "
                        f"(predicted - measured) / measured, positive where the plan over-predicts: {overall}."),
                   Table(judged)]
    if not unjudged.empty:
        blocks += [Text("CPU trials: the measured peak_memory_mb there is the resident memory the trial added (RSS "
                        "growth: allocator caches and libraries included), which the prediction is not judged "
                        "against; only the prediction is shown."),
                   Table(unjudged)]
    return blocks


def recommendation(rec: Recommendation) -> list:
    blocks: list = [Heading("Recommendation"), Text(rec.text)]
    if rec.chosen is not None:
        shown = pd.DataFrame([rec.best, rec.chosen]).drop_duplicates(subset=["config"])
        shown.insert(0, "role", ["best accuracy", "recommended"] if len(shown) == 2 else ["best accuracy and recommended"])
        extra = ["trainable_params", "monthly_total_usd", "roi", "payback_months"]
        blocks.append(Table(shown[["role", *tables.point_columns(shown, extra)]]))
    return blocks


def cost_inputs(cost: CostConfig) -> pd.DataFrame:
    rows = [{"key": f"cost.{f.name}", "value": "null" if getattr(cost, f.name) is None else str(getattr(cost, f.name)),
             "unit": INPUT_UNITS.get(f.name, "")} for f in dataclasses.fields(cost)]
    return pd.DataFrame(rows)


def costs(frame: pd.DataFrame, points: pd.DataFrame, cost: CostConfig) -> list:
    total, counted, unknown = cst.sweep_total_cost(frame, cost)
    baselines, baseline_from = cst.baseline_of(frame, cost)
    shown = ", ".join(f"{b:.4f}" for b in sorted(set(baselines.dropna()))) or "n/a"
    text = (f"Sweep total training cost: {money(total)} over {counted} trial run{'' if counted == 1 else 's'} with a "
            "known train time" + (f" ({unknown} without one {'is' if unknown == 1 else 'are'} not counted)" if unknown else "")
            + "; trials that reused an earlier result cost nothing. One-off cost for the ROI: sweep total + engineering "
            f"{money(cost.engineering_cost)} = {money(total + cost.engineering_cost)}. Baseline accuracy: {shown} "
            f"({baseline_from}). Benefit and ROI are given for completed trials only. Formulas: see sweep/report/cost.py.")
    blocks: list = [Heading("Cost and ROI"), Text(text), Table(cost_inputs(cost))]
    if not points.empty:
        ranked = points.iloc[order_best_first(points[Y].to_numpy(dtype=float), mt.direction(Y))]
        blocks.append(Table(ranked[["trials", "config_hashes", Y, *[c for c in COST_TABLE if c in ranked]]]))
    return blocks
