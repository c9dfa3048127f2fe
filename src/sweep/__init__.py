"""lorasweep: experiment orchestration for LoRA fine-tuning sweeps."""

__version__ = "0.1.0"
