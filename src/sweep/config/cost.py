"""Schema of the `cost` group: prices and business inputs that the report turns into cost and ROI.

Composed by Hydra with the other groups (conf/cost/*.yaml) and validated at load; the
report reads it from the composed config. Excluded from the config hash: the same trial
priced on other hardware hashes the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from sweep.config.errors import Problems


@dataclass
class CostConfig:
    """Prices and business inputs of the report (conf/cost/*.yaml); every check names `cost.<key>`."""

    GROUP: ClassVar[str] = "cost"

    device: str | None = None  # id in sweep/devices.py (a100-80gb, l4, t4, ...): a null hardware / price comes from its entry
    hardware: str | None = "cpu"  # name of the device the prices are for (null = the device table's name for cost.device)
    price_per_device_hour: float | None = 0.0  # USD per device-hour (null = the device table's price for cost.device)
    devices_per_trial: float | None = None  # devices one trial occupies; null = each trial's own: the GPUs it was
    # given over the workers sharing them (a GPU shared by 2 workers: 0.5), 1 on the CPU
    value_per_accuracy_point_per_month: float | None = None  # USD/month per +1 accuracy point over the baseline
    monthly_benefit: float | None = None  # USD/month, fixed benefit (instead of the per-point value)
    baseline_accuracy: float | None = None  # fraction; null = measured by the study's baseline run (the base model without an adapter)
    monthly_requests: float = 0.0  # inference requests per month
    batch_size_inference: int | None = None  # requests per measured latency batch; null = the trial's eval batch
    engineering_cost: float = 0.0  # USD, one-off
    tolerance_points: float = 1.0  # accuracy points below the best a recommendation may be
    horizon_months: float = 12.0  # months the ROI is computed over

    def __post_init__(self) -> None:
        p = Problems()
        self._from_device_table(p)
        if not str(self.hardware).strip():
            p.add("cost.hardware", "must name the hardware, e.g. cost.hardware='A100 80GB'")
        for key in ("price_per_device_hour", "monthly_requests", "engineering_cost", "tolerance_points"):
            v = getattr(self, key)
            if not math.isfinite(v) or v < 0:
                p.add(f"cost.{key}", f"must be a finite number >= 0, got {v}")
        if self.devices_per_trial is not None and not (math.isfinite(self.devices_per_trial) and self.devices_per_trial > 0):
            p.add("cost.devices_per_trial", f"must be > 0 or null (each trial's own share), got {self.devices_per_trial}")
        if self.batch_size_inference is not None and self.batch_size_inference < 1:
            p.add("cost.batch_size_inference", f"must be >= 1 or null (= the trial's eval batch), got {self.batch_size_inference}")
        if not math.isfinite(self.horizon_months) or self.horizon_months <= 0:
            p.add("cost.horizon_months", f"must be > 0, got {self.horizon_months}")
        if (self.value_per_accuracy_point_per_month is None) == (self.monthly_benefit is None):
            p.add("cost.value_per_accuracy_point_per_month",
                  "set exactly one of cost.value_per_accuracy_point_per_month and cost.monthly_benefit; set the other to null")
        if self.monthly_benefit is not None and not math.isfinite(self.monthly_benefit):
            p.add("cost.monthly_benefit", f"must be a finite number, got {self.monthly_benefit}")
        if self.value_per_accuracy_point_per_month is not None and not math.isfinite(self.value_per_accuracy_point_per_month):
            p.add("cost.value_per_accuracy_point_per_month", f"must be a finite number, got {self.value_per_accuracy_point_per_month}")
        if self.baseline_accuracy is not None and not 0.0 <= self.baseline_accuracy <= 1.0:
            p.add("cost.baseline_accuracy", f"is a fraction in [0, 1] (e.g. 0.62), got {self.baseline_accuracy}")
        p.raise_if_any()

    def _from_device_table(self, p: Problems) -> None:
        """Fill a null hardware name and price from sweep/devices.py's entry for cost.device (the one device table)."""
        from sweep import devices

        entry = None
        if self.device is not None:
            entry = devices.BY_ID.get(self.device)
            if entry is None:
                p.add("cost.device", f"unknown device id {self.device!r} (one of {devices.ids()}, or null)")
        if self.hardware is None:
            if entry is None:
                p.add("cost.hardware", "is null: name the hardware (cost.hardware='A100 80GB') or set cost.device")
            self.hardware = entry.name if entry else ""
        if self.price_per_device_hour is None:
            if entry is not None and entry.price_usd_h is None:
                p.add("cost.price_per_device_hour", f"is null and sweep/devices.py has no price for {entry.id}: set "
                      "cost.price_per_device_hour=<USD per device-hour>")
            elif entry is None:
                p.add("cost.price_per_device_hour", "is null: set a price or cost.device with a price in sweep/devices.py")
            self.price_per_device_hour = entry.price_usd_h if entry and entry.price_usd_h is not None else 0.0

    @classmethod
    def from_dict(cls, d: dict) -> "CostConfig":
        """Typed, validated CostConfig; unknown keys and wrong types are reported with the checks, one line each."""
        from sweep.config.typed import from_dict

        return from_dict(cls, dict(d or {}), "cost")


# what each input means, for the report's assumptions table
INPUT_UNITS: dict[str, str] = {
    "device": "id in sweep/devices.py (null = none)",
    "hardware": "device the prices are for",
    "price_per_device_hour": "USD per device-hour",
    "devices_per_trial": "devices per trial",
    "value_per_accuracy_point_per_month": "USD/month per accuracy point over the baseline",
    "monthly_benefit": "USD/month, fixed",
    "baseline_accuracy": "fraction (null = the measured baseline run)",
    "monthly_requests": "requests/month",
    "batch_size_inference": "requests per measured batch (null = the trial's eval batch)",
    "engineering_cost": "USD, one-off",
    "tolerance_points": "accuracy points",
    "horizon_months": "months",
}
