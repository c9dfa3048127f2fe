"""Compare a rerun's metrics with the original's: reproducible metrics judged, the rest shown as ratios.

Which metrics must come out again is declared in the one metric table (`reproducible`):
exactly on CPU, within the tolerances below on GPU (non-deterministic kernels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sweep import metrics as mt

GPU_ABS_TOL = {"eval_accuracy": 0.01}  # absolute tolerance on GPU
GPU_REL_TOL = {"eval_loss": 1e-3, "train_loss": 1e-3}  # relative tolerance on GPU


@dataclass
class Row:
    metric: str
    unit: str
    original: Any
    rerun: Any
    verdict: str  # match | DIFF | ratio x.. | not judged
    judged: bool
    ok: bool


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def judge(metric: str, original: float, rerun: float, gpu: bool) -> bool:
    """Does a deterministic metric match: exactly (CPU, and counts everywhere), or within the GPU tolerance."""
    a, b = float(original), float(rerun)
    if math.isnan(a) and math.isnan(b):
        return True
    if gpu and metric in GPU_ABS_TOL:
        return abs(a - b) <= GPU_ABS_TOL[metric]
    if gpu and metric in GPU_REL_TOL:
        return abs(a - b) <= GPU_REL_TOL[metric] * max(abs(a), abs(b))
    return a == b


def compare(original: dict[str, float], rerun: dict[str, float], *, gpu: bool,
            original_status: str = "", rerun_status: str = "") -> list[Row]:
    """One row per metric (status first): deterministic ones judged, the rest shown as rerun/original ratios."""
    rows = []
    if original_status:
        same = original_status == rerun_status
        rows.append(Row("status", "", original_status, rerun_status, "match" if same else "DIFF", True, same))
    names = [m.name for m in mt.METRICS if m.name in original or m.name in rerun]
    names += sorted((set(original) | set(rerun)) - set(mt.BY_NAME))
    for name in names:
        unit = mt.BY_NAME[name].unit if name in mt.BY_NAME else ""
        a, b = original.get(name), rerun.get(name)
        if name in mt.REPRODUCIBLE:
            if a is None:
                rows.append(Row(name, unit, a, b, "not in original", False, True))
            elif b is None:
                rows.append(Row(name, unit, a, b, "DIFF (missing in rerun)", True, False))
            else:
                ok = judge(name, a, b, gpu)
                rows.append(Row(name, unit, a, b, "match" if ok else "DIFF", True, ok))
        else:
            if _is_num(a) and _is_num(b) and math.isfinite(a) and math.isfinite(b) and a != 0:
                verdict = f"ratio x{b / a:.3g}"
            else:
                verdict = "not judged"
            rows.append(Row(name, unit, a, b, verdict, False, True))
    return rows


def _cell(v, unit: str, exact: bool) -> str:
    if v is None:
        return "–"
    if not _is_num(v):
        return str(v)
    if math.isnan(float(v)):
        return "nan"
    if unit == "params":
        return f"{float(v):,.0f}"
    return repr(float(v)) if exact else f"{float(v):.6g}"


def format_rows(rows: list[Row]) -> str:
    """The side-by-side table as text."""
    table = [("metric", "unit", "original", "rerun", "match")]
    for r in rows:
        exact = r.metric in mt.REPRODUCIBLE
        table.append((r.metric, r.unit, _cell(r.original, r.unit, exact), _cell(r.rerun, r.unit, exact), r.verdict))
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table)


def tolerance_text(gpu: bool) -> str:
    if not gpu:
        return "CPU: deterministic metrics must match exactly"
    abs_t = ", ".join(f"{k} abs {v:g}" for k, v in GPU_ABS_TOL.items())
    rel_t = ", ".join(f"{k} rel {v:g}" for k, v in GPU_REL_TOL.items())
    return f"GPU: tolerance {abs_t}; {rel_t}; parameter counts and eval_samples exact"
