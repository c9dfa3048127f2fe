"""Price one base + K adapters (one deployment) against K merged deployments, from measured figures.

    requests of task k (req/month)    = cost.monthly_requests x share_k            (shares: even unless given)
    busy device-hours, merged k       = requests_k / batch x merged_p50_k / 3.6e6
    busy device-hours, shared base    = sum_k requests_k / batch x (unmerged_p50_k + switch_p50) / 3.6e6
                                        (worst case: one adapter switch before every batch)
    devices of a deployment           = max(1, ceil(busy hours / HOURS_PER_MONTH))   (a deployment is always on)
    monthly serving cost (USD/month)  = devices x HOURS_PER_MONTH x cost.price_per_device_hour
    compute only (USD/month)          = busy hours x cost.price_per_device_hour   (the report's pay-per-use view)
    adapters that fit one device      = floor((device memory - base) / resident memory of one adapter)
    merged copies that fit one device = floor(device memory / resident memory of one merged model)

`batch` is cost.batch_size_inference, else the measured eval batch (as in sweep.report.cost).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

HOURS_PER_MONTH = 730.0  # 24 x 365 / 12
MS_PER_HOUR = 3.6e6


def busy_hours(requests: float, batch: float, ms_per_batch: float) -> float:
    """Device-hours a month of `requests` keeps a device busy at `ms_per_batch` per batch of `batch` requests."""
    return requests / batch * ms_per_batch / MS_PER_HOUR


def devices_for(hours: float) -> int:
    """Always-on devices a deployment needs for `hours` busy hours a month (at least one)."""
    return max(1, math.ceil(hours / HOURS_PER_MONTH - 1e-12))


def monthly_cost(devices: int, price_per_device_hour: float) -> float:
    """USD per month of `devices` always-on devices."""
    return devices * HOURS_PER_MONTH * price_per_device_hour


def fits(device_mb: float, fixed_mb: float, each_mb: float) -> int:
    """How many items of `each_mb` fit in `device_mb` beside `fixed_mb` (0 when not even the fixed part fits)."""
    if each_mb <= 0 or device_mb < fixed_mb:
        return 0
    return int((device_mb - fixed_mb) // each_mb)


@dataclass
class TaskLoad:
    study: str
    share: float  # fraction of the monthly requests
    requests: float  # requests/month
    unmerged_ms: float  # p50 ms per batch, adapter active on the shared base
    merged_ms: float  # p50 ms per batch, merged model
    merged_hours: float  # busy device-hours/month of its merged deployment
    merged_devices: int  # always-on devices of its merged deployment


@dataclass
class Pricing:
    batch: float  # requests per measured batch
    switch_ms: float  # p50 set_adapter time, ms
    tasks: list[TaskLoad]
    shared_hours: float  # busy device-hours/month of the one shared deployment
    shared_devices: int
    merged_devices: int  # summed over the K merged deployments
    shared_monthly_usd: float
    merged_monthly_usd: float
    shared_compute_usd: float  # busy hours x price, shared base
    merged_compute_usd: float  # busy hours x price, K merged
    device_memory_mb: float  # memory of one device the fit counts assume
    adapters_fit: int | None = None  # adapters that fit beside one base on one device (None: memory not measured)
    merged_fit: int | None = None  # merged copies that fit on one device
    notes: list[str] = field(default_factory=list)

    @property
    def saving_usd(self) -> float:
        return self.merged_monthly_usd - self.shared_monthly_usd


def even_shares(studies: list[str], given: dict[str, float] | None = None) -> dict[str, float]:
    """Request shares per study: the given weights normalised, else equal; unnamed studies get weight 1."""
    weights = {s: float((given or {}).get(s, 1.0)) for s in studies}
    total = sum(weights.values())
    return {s: w / total for s, w in weights.items()}


def price(*, cost, batch: float, switch_ms: float, shares: dict[str, float], unmerged_ms: dict[str, float],
          merged_ms: dict[str, float], device_memory_mb: float, memory=None) -> Pricing:
    """The two deployments priced at cost.monthly_requests (see the module docstring for the formulas)."""
    tasks = []
    shared_hours = 0.0
    for study, share in shares.items():
        req = cost.monthly_requests * share
        mh = busy_hours(req, batch, merged_ms[study])
        tasks.append(TaskLoad(study, share, req, unmerged_ms[study], merged_ms[study], mh, devices_for(mh)))
        shared_hours += busy_hours(req, batch, unmerged_ms[study] + switch_ms)
    shared_devices = devices_for(shared_hours)
    merged_devices = sum(t.merged_devices for t in tasks)
    p = cost.price_per_device_hour
    out = Pricing(batch=batch, switch_ms=switch_ms, tasks=tasks, shared_hours=shared_hours, shared_devices=shared_devices,
                  merged_devices=merged_devices, shared_monthly_usd=monthly_cost(shared_devices, p),
                  merged_monthly_usd=monthly_cost(merged_devices, p), shared_compute_usd=shared_hours * p,
                  merged_compute_usd=sum(t.merged_hours for t in tasks) * p, device_memory_mb=device_memory_mb)
    if memory is not None:
        out.adapters_fit = fits(device_memory_mb, memory.base_mb, memory.adapter_mb)
        out.merged_fit = fits(device_memory_mb, 0.0, memory.merged_each_mb)
    return out
