"""Assemble the report of a study and write it: report.md, a self-contained report.html, trials.csv, PNGs.

The report is a list of blocks (blocks.py) built once here and written twice: as Markdown
next to the PNGs, and as one HTML file.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from sweep import metrics as mt
from sweep.config.cost import INPUT_UNITS, CostConfig
from sweep.report import cost as cst
from sweep.report import plots, stats, tables
from sweep.report.blocks import Heading, Image, Table, Text, to_html, to_markdown
from sweep.report.load import ReportError, Study, load_study
from sweep.report.pareto import frontier_mask, order_best_first

# Pareto plots: eval_accuracy against each of these (training cost is derived from train_time_s)
PARETO_X = ("trainable_ratio", "merged_latency_p50_ms", "peak_memory_mb", "training_cost_usd")
Y = "eval_accuracy"
COST_TABLE = ("training_cost_usd", "inference_usd_per_million", "monthly_inference_usd", "monthly_total_usd",
              "monthly_benefit_usd", "net_monthly_usd", "roi", "payback_months")


@dataclass
class ReportFiles:
    folder: Path
    markdown: Path
    html: Path
    csv: Path
    pngs: list[Path] = field(default_factory=list)

    def paths(self) -> list[Path]:
        return [self.markdown, self.html, self.csv, *self.pngs]




# ------------------------------------------------------------------ content
def _check_objectives(study: Study) -> None:
    for name in study.objectives:
        try:
            mt.get(name)
        except KeyError as exc:
            raise ReportError(f"parent run tag lorasweep.objectives of study {study.name!r}: {exc.args[0]}") from None


def _summary(study: Study, frame: pd.DataFrame, cost: CostConfig) -> str:
    counts = frame["status"].value_counts()
    n_reused = int(frame["reused_from"].notna().sum())
    parts = [f"{int(counts.get(s, 0))} {s.lower()}" for s in ("COMPLETE", "PRUNED", "FAILED", "RUNNING") if counts.get(s, 0)]
    objectives = ", ".join(f"{m} ({mt.direction(m).value})" for m in study.objectives)
    question = study.parent_tags.get("tag.question")
    devices = ", ".join(sorted({d for d in frame["device"] if d})) or "not recorded"
    text = (f"Experiment `{study.experiment}`, study `{study.name}`: {len(frame)} trial runs in MLflow ({', '.join(parts)}"
            f"{f'; {n_reused} reused an earlier result' if n_reused else ''}). Objectives: {objectives}. "
            f"Question (grouped by): {', '.join(study.group_by)}" + (f" — {question}" if question else "") + ". "
            f"Devices: {devices}. Source: {study.tracking_uri}, experiment id {study.experiment_id}. "
            f"Costs priced for {cost.hardware}. Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.")
    return text


def _cost_inputs(cost: CostConfig) -> pd.DataFrame:
    rows = [{"key": f"cost.{f.name}", "value": "null" if getattr(cost, f.name) is None else str(getattr(cost, f.name)),
             "unit": INPUT_UNITS.get(f.name, "")} for f in dataclasses.fields(cost)]
    return pd.DataFrame(rows)


def _pareto_section(points: pd.DataFrame, folder: Path, objectives: list[str]) -> tuple[list, list[Path]]:
    blocks: list = [Heading("Pareto frontiers"),
                    Text("Each point is one config (seeds of a config folded into their mean; bars show the seed range). "
                         "Red points are non-dominated: no other config is at least as good on both axes and better on one; "
                         "grey points are dominated. Directions come from sweep/metrics.py.")]
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


def _noise_section(points: pd.DataFrame) -> list:
    blocks: list = [Heading("Noise: are the top configs distinguishable?")]
    verdict = stats.noise_check(points, mt.direction(Y))
    if verdict is None:
        return blocks + [Text("No completed trial with an accuracy.")]
    blocks += [Text(verdict.text + " Interval: Wilson score, 95%, on eval_samples examples (seeds pooled)."),
               Table(verdict.table)]
    seeds = tables.seeds_table(points)
    if seeds.empty:
        blocks.append(Text("Every config ran with a single seed: the spread between seeds is unknown; the binomial "
                           "interval above is the only noise estimate."))
    else:
        blocks += [Heading("Configs run with several seeds", 3), Table(seeds)]
    return blocks


def _recommendation_section(rec: cst.Recommendation) -> list:
    blocks: list = [Heading("Recommendation"), Text(rec.text)]
    if rec.chosen is not None:
        shown = pd.DataFrame([rec.best, rec.chosen]).drop_duplicates(subset=["config"])
        shown.insert(0, "role", ["best accuracy", "recommended"] if len(shown) == 2 else ["best accuracy and recommended"])
        extra = ["trainable_params", "monthly_total_usd", "roi", "payback_months"]
        blocks.append(Table(shown[["role", *tables.point_columns(shown, extra)]]))
    return blocks


def _question_section(study: Study, frame: pd.DataFrame, folder: Path) -> tuple[list, list[Path]]:
    by = [c for c in study.group_by if c in frame]
    missing = [c for c in study.group_by if c not in frame]
    blocks: list = [Heading(f"The experiment's question: by {', '.join(study.group_by)}")]
    pngs: list[Path] = []
    if missing:
        blocks.append(Text(f"Not recorded as a param of any trial: {', '.join(missing)}."))
    if by:
        blocks.append(Text("Per group: trial runs, n completed (reused copies left out), trials that did not complete, and "
                           "best / mean / std / spread of eval_accuracy over the completed ones; cost columns are means."))
        blocks.append(Table(tables.group_table(frame, by)))
        done = stats.measured(frame)
        if not done.empty and done[Y].notna().any():
            png = plots.group_plot(done, by, Y, folder / f"groups_{Y}.png", f"{Y} by {', '.join(by)}")
            pngs.append(png)
            blocks.append(Image(png, f"{Y} by {', '.join(by)}"))
    for axis in tables.other_axes(frame, by):
        blocks += [Heading(f"By {axis}", 3), Table(tables.group_table(frame, [axis]))]
    return blocks, pngs


def _cost_section(frame: pd.DataFrame, points: pd.DataFrame, cost: CostConfig) -> list:
    total, counted, unknown = cst.sweep_total_cost(frame, cost)
    baseline, baseline_from = cst.baseline_of(frame, cost)
    text = (f"Sweep total training cost: {cst.money(total)} over {counted} trial run{'' if counted == 1 else 's'} with a "
            "known train time" + (f" ({unknown} without one {'is' if unknown == 1 else 'are'} not counted)" if unknown else "")
            + "; trials that reused an earlier result cost nothing. One-off cost for the ROI: sweep total + engineering "
            f"{cst.money(cost.engineering_cost)} = {cst.money(total + cost.engineering_cost)}. Baseline accuracy: "
            f"{baseline:.4f} ({baseline_from}). Benefit and ROI are given for completed trials only. "
            "Formulas: see sweep/report/cost.py.")
    blocks: list = [Heading("Cost and ROI"), Text(text), Table(_cost_inputs(cost))]
    if not points.empty:
        ranked = points.iloc[order_best_first(points[Y].to_numpy(dtype=float), mt.direction(Y))]
        blocks.append(Table(ranked[["trials", "config_hashes", Y, *[c for c in COST_TABLE if c in ranked]]]))
    return blocks


def build_blocks(study: Study, cost: CostConfig, folder: Path) -> tuple[list, pd.DataFrame, list[Path]]:
    """The report's blocks, the trials frame with cost columns (for trials.csv), and the PNGs written."""
    _check_objectives(study)
    frame = cst.add_costs(study.trials, cost)
    metric_names = [m.name for m in mt.METRICS] + list(cst.DERIVED)
    points = stats.config_points(frame, [m for m in metric_names if m in frame])
    one_off = cst.sweep_total_cost(frame, cost)[0] + cost.engineering_cost
    rec = cst.recommend(points, cost, study.objectives, one_off)

    blocks: list = [Heading(f"lorasweep report: {study.name}", 1), Text(_summary(study, frame, cost))]
    blocks += _recommendation_section(rec)
    question, pngs = _question_section(study, frame, folder)
    blocks += question
    pareto_blocks, pareto_pngs = _pareto_section(points, folder, study.objectives)
    blocks += pareto_blocks
    pngs += pareto_pngs
    blocks += _noise_section(points)
    blocks += _cost_section(frame, points, cost)
    blocks += [Heading("All trials"), Text("Key config and metrics per trial run; every metric is in trials.csv. "
                                           "`reused` = the result was copied from that earlier trial with the same config hash."),
               Table(tables.trials_table(frame, study.objectives))]
    blocks += [Heading("Failed, pruned and unfinished trials"),
               Table(tables.failures_table(frame), empty="(none: every trial completed)")]
    reused = tables.reused_table(frame)
    if not reused.empty:
        blocks += [Heading("Reused results"), Table(reused)]
    if rec.chosen is not None:
        blocks += [Heading("Reproduce"), Text("Rerun a trial from its config hash and compare every metric: "
                                              f"`python -m sweep.reproduce {rec.chosen['config_hash']}`.")]
    return blocks, frame, pngs


def _csv_value(v):
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def write_report(study: Study, cost: CostConfig, out_root: Path) -> ReportFiles:
    """Write reports/<study>/{report.md, report.html, trials.csv, *.png}."""
    folder = Path(out_root) / study.name
    folder.mkdir(parents=True, exist_ok=True)
    for old in [*folder.glob("pareto_*.png"), *folder.glob("groups_*.png")]:
        old.unlink()  # plots of an earlier report that may not be redrawn
    blocks, frame, pngs = build_blocks(study, cost, folder)
    files = ReportFiles(folder, folder / "report.md", folder / "report.html", folder / "trials.csv", pngs)
    files.markdown.write_text(to_markdown(blocks), encoding="utf-8")
    files.html.write_text(to_html(blocks, f"lorasweep report: {study.name}"), encoding="utf-8")
    frame.map(_csv_value).to_csv(files.csv, index=False)
    return files


def build_report(study: str, cost: CostConfig, tracking_uri: str, out_root: Path) -> ReportFiles:
    """Load `study` from MLflow and write its report."""
    return write_report(load_study(study, tracking_uri), cost, out_root)
