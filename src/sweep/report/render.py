"""Assemble the report of a study and write it: report.md, a self-contained report.html, trials.csv, PNGs.

The report is a list of blocks (blocks.py) built once here and written twice: as Markdown
next to the PNGs, and as one HTML file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from sweep import metrics as mt
from sweep.config.cost import CostConfig
from sweep.names import folder_for
from sweep.report import cost as cst
from sweep.report import sections, stats, tables
from sweep.report.blocks import Heading, Table, Text, to_html, to_markdown
from sweep.report.load import ReportError, Study, load_study
from sweep.report.recommend import Recommendation, recommend


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
    share = pd.to_numeric(frame["gpu_share"], errors="coerce") if "gpu_share" in frame else pd.Series(dtype=float)
    shared = int((share > 1).sum())
    if shared:  # its latency was timed alone on the GPU (sweep.measure.gpu_share), its training was not
        devices += (f"; {shared} trial{'s' if shared != 1 else ''} trained on a GPU shared with other workers "
                    "(train_time_s and throughput include the neighbours' load; latency was timed alone; training "
                    "cost counts its share of the GPU)")
    ruled_out = len(study.ruled_out)
    text = (f"Experiment `{study.experiment}`, study `{study.name}`: {len(frame)} trial runs in MLflow ({', '.join(parts)}"
            f"{f'; {n_reused} reused an earlier result' if n_reused else ''})"
            f"{f', and {ruled_out} configs ruled out before training by the budgets (listed below)' if ruled_out else ''}"
            f". Objectives: {objectives}. "
            f"Question (grouped by): {', '.join(study.group_by)}" + (f" — {question}" if question else "") + ". "
            f"Devices: {devices}. Source: {study.tracking_uri}, experiment id {study.experiment_id}"
            + (f" (`{study.experiment_name}`)" if study.experiment_name and study.experiment_name != study.name else "")
            + ". "
            f"Costs priced for {cost.hardware}. Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.")
    return text


def point_metrics(frame: pd.DataFrame) -> list[str]:
    """Columns folded into config points: every declared metric, the interval bounds, the cost columns."""
    names = [m.name for m in mt.METRICS] + [b for m in mt.METRICS for b in mt.interval_names(m.name)]
    return [c for c in [*names, "baseline_accuracy", *cst.DERIVED] if c in frame]


def recommendation_of(study: Study, cost: CostConfig) -> tuple[Recommendation, pd.DataFrame, pd.DataFrame]:
    """The report's recommendation for a study, with the config points and the trials frame (cost columns added)."""
    frame = cst.add_costs(study.trials, cost)
    points = stats.config_points(frame, point_metrics(frame))
    one_off = cst.sweep_total_cost(frame, cost)[0] + cost.engineering_cost
    return recommend(points, cost, study.objectives, one_off), points, frame


def build_blocks(study: Study, cost: CostConfig, folder: Path) -> tuple[list, pd.DataFrame, list[Path]]:
    """The report's blocks, the trials frame with cost columns (for trials.csv), and the PNGs written."""
    _check_objectives(study)
    rec, points, frame = recommendation_of(study, cost)

    blocks: list = [Heading(f"lorasweep report: {study.name}", 1), Text(_summary(study, frame, cost))]
    blocks += sections.recommendation(rec)
    question, pngs = sections.question(study, frame, folder)
    blocks += question
    pareto_blocks, pareto_pngs = sections.pareto(points, folder, study.objectives)
    blocks += pareto_blocks
    pngs += pareto_pngs
    blocks += sections.noise(points, study)
    blocks += sections.costs(frame, points, cost)
    blocks += sections.memory_prediction(frame)
    blocks += [Heading("All trials"), Text("Key config and metrics per trial run; every metric is in trials.csv. "
                                           "`reused` = the result was copied from that earlier trial with the same config hash."),
               Table(tables.trials_table(frame, study.objectives))]
    blocks += [Heading("Failed, pruned and unfinished trials"),
               Table(tables.failures_table(frame), empty="(none: every trial completed)")]
    if not study.ruled_out.empty:
        blocks += [Heading("Ruled out before training"),
                   Text("Configs the sampler proposed that exceed the sweep's budgets (sweep.memory_budget_mb: "
                        "sweep.plan's predicted total memory; sweep.max_trainable_params): never trained, in no "
                        "table above, not counted toward sweep.n_trials; Optuna was told they are infeasible, so "
                        "TPE steers away from them. predicted_peak_memory_mb is the planned allocator "
                        "peak; the reason gives the planned total against the budget."),
                   Table(tables.ruled_out_table(study.ruled_out))]
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
    """Write reports/<study>/{report.md, report.html, trials.csv, *.png}; a study named before sweep/names.py's rule
    (`team/intent`) is written to the safe form of its name (`reports/team_intent/`)."""
    folder = Path(out_root) / folder_for(study.name)
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
