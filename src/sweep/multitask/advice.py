"""Which deployment to ship, one base + K adapters or K merged models, and why.

The rule, in order:
  1. every adapter must reproduce its study's accuracy exactly on the shared base; otherwise
     the shared base is not shippable yet, whatever it costs;
  2. the cheaper monthly serving cost wins (always-on devices at the configured volume);
  3. at equal cost, a latency difference counts only when it is beyond the noise (the one rule,
     sweep.noise.beyond_noise, through sweep.multitask.noise.differ); then the faster wins,
     and with no measurable difference the shared base wins on memory and on one deployment.
"""

from __future__ import annotations

from sweep.multitask.noise import differ
from sweep.report.recommend import money


def _latency_words(latency: list, batch: int) -> tuple[list[str], list[str], str]:
    """(studies slower unmerged, studies faster unmerged, summary) at the priced batch size."""
    rows = [r for r in latency if r.batch == batch] or latency
    slower = [r.study for r in rows if differ(r.unmerged, r.merged) and r.unmerged.p50_ms > r.merged.p50_ms]
    faster = [r.study for r in rows if differ(r.unmerged, r.merged) and r.unmerged.p50_ms < r.merged.p50_ms]
    parts = [f"{r.study} {r.unmerged.p50_ms:.3g} vs {r.merged.p50_ms:.3g} ms" for r in rows]
    found = [f"measurably higher unmerged for {', '.join(slower)}" if slower else "",
             f"measurably lower unmerged for {', '.join(faster)}" if faster else ""]
    rest = [r.study for r in rows if r.study not in slower + faster]
    if rest and (slower or faster):
        found.append(f"indistinguishable for {', '.join(rest)}")
    summary = (f"per-request latency at batch {rows[0].batch} (unmerged vs merged p50: " + "; ".join(parts) + ") is "
               + (", ".join(f for f in found if f) + " (95% interval of the difference of the medians)" if slower or faster
                  else "indistinguishable for every task (the 95% interval of the difference of the medians contains zero)"))
    return slower, faster, summary


def recommend(*, correctness: list, latency: list, pricing, memory, cost, k: int) -> str:
    """The recommendation in words (see the module docstring for the rule)."""
    bad = [c for c in correctness if not c.exact]
    if bad:
        worst = bad[0]
        return (f"Do not ship the shared base yet: with adapter {worst.study} active it gave eval_accuracy "
                f"{worst.served_accuracy:.4f} against the recorded {worst.recorded_accuracy:.4f} (eval_loss "
                f"{worst.served_loss:.6g} vs {worst.recorded_loss:.6g}); serve {k} merged models until the difference is "
                "explained (another base? another thread count? see the correctness table).")
    p = pricing
    batch = int(p.batch) if p.batch == int(p.batch) else p.batch
    slower, faster, lat_text = _latency_words(latency, batch)
    mem = ""
    if memory is not None:
        mem = (f" Memory: one base + {k} adapters holds {memory.stack_mb:,.0f} MiB resident against {memory.merged_mb:,.0f} MiB "
               f"for {k} merged models (one adapter adds {memory.adapter_mb:,.1f} MiB, one merged model takes "
               f"{memory.merged_each_mb:,.0f} MiB)")
        if p.adapters_fit is not None:
            mem += (f"; a device with {p.device_memory_mb:,.0f} MiB holds one base + {p.adapters_fit:,} adapters or "
                    f"{p.merged_fit:,} merged models.")
        else:
            mem += "."
    costs = (f"At {cost.monthly_requests:,.0f} requests/month on {cost.hardware} ({money(cost.price_per_device_hour)}/device-hour), "
             f"one base + {k} adapters needs {p.shared_devices} always-on device{'s' if p.shared_devices != 1 else ''} "
             f"({money(p.shared_monthly_usd)}/month) against {p.merged_devices} for {k} merged deployments "
             f"({money(p.merged_monthly_usd)}/month); the compute alone is {money(p.shared_compute_usd)} vs "
             f"{money(p.merged_compute_usd)}/month, switching priced at one set_adapter ({p.switch_ms:.3g} ms) per batch.")
    exact = f"Every adapter reproduced its study's eval accuracy exactly on the shared base ({k} of {k})."
    if p.shared_monthly_usd < p.merged_monthly_usd:
        head = (f"Ship one base + {k} adapters: it saves {money(p.saving_usd)}/month "
                f"({p.saving_usd / p.merged_monthly_usd:.0%} of the merged cost) with identical accuracy.")
    elif p.shared_monthly_usd > p.merged_monthly_usd:
        head = (f"Ship {k} merged models: at this volume the unmerged adapters and switches need more devices "
                f"({money(-p.saving_usd)}/month more for the shared base).")
    elif slower and not faster:
        head = (f"Ship {k} merged models: the serving cost is the same and the merged models are measurably faster "
                f"for {', '.join(slower)}.")
    else:
        head = (f"Ship one base + {k} adapters: the serving cost is the same, the latency difference is within the noise "
                "where there is one, and it is one deployment holding less memory.")
    return " ".join([head, exact, costs, lat_text[0].upper() + lat_text[1:] + "." + mem])
