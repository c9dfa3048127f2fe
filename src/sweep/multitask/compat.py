"""Can these adapters share one base model, and which serving features does PEFT support for them?

One base serves only adapters trained on the same base weights with the same
quantization: every `model.*` and `quant.*` key must agree, and so must the model
fingerprint recorded by the trial (tiny models are seeded by `train.seed`). A study
that differs is refused with one line naming it and the key.

What PEFT (0.21) does not support here, checked before anything is run (a failed mixed
forward leaves PEFT's adapter_names hooks registered on the model, so it is never tried):
  AdaLoRA   adapters this project saves cannot be reloaded (resize_modules_by_rank_pattern
            looks up the parent module), and AdaLoRA cannot sit beside LoRA adapters in one
            model (different peft types): refused.
  PiSSA / OLoRA init   rewrites the base weights during training, so the saved adapter fits
            only its own modified base: refused.
  DoRA      named adapters and set_adapter work; mixed batches (`adapter_names`) are refused by
            PEFT: reported as unsupported, the rest is measured.
  heads of different sizes   PEFT's ModulesToSaveWrapper stacks per-row head outputs and fails
            when tasks have different label counts: rows are grouped by adapter for the head
            (see stack.grouped_heads); the LoRA layers still use PEFT's per-row adapter_names.
  quantized bases (bitsandbytes)   named adapters, set_adapter and mixed batches work; merging
            re-quantizes the merged weights, so merged logits differ from unmerged ones.
"""

from __future__ import annotations

from sweep.multitask import MultitaskError
from sweep.tracking.base import flatten

SHARED_GROUPS = ("model", "quant")  # config groups that must be equal for adapters to share a base


def _fix(study: str) -> str:
    return (f"one base serves only adapters trained on the same base model and quantization: choose studies with the "
            f"same model=/quant=, or another trial with --hash {study}=PREFIX")


def _refuse_method(c) -> None:
    cfg = c.config
    if cfg.data.task != "classification":
        raise MultitaskError(f"study {c.study!r}: data.task={cfg.data.task}: sweep.multitask serves classification "
                             "adapters (one classifier head per task); instruction-tuned studies are not supported yet")
    if cfg.lora.method == "adalora":
        raise MultitaskError(f"study {c.study!r}: lora.method=adalora: PEFT cannot reload this project's saved AdaLoRA "
                             f"adapters nor serve them beside LoRA adapters; pick a LoRA trial with --hash {c.study}=PREFIX")
    if cfg.lora.init in ("pissa", "olora"):
        raise MultitaskError(f"study {c.study!r}: lora.init={cfg.lora.init} rewrites the base weights, so its adapter "
                             f"does not fit a shared base; pick a trial with lora.init=default via --hash {c.study}=PREFIX")


def check_compatible(chosen: list) -> None:
    """Raise MultitaskError (one line) unless every adapter can be served on the first one's base model."""
    if len(chosen) < 2:
        raise MultitaskError("give at least two studies (one adapter per task), e.g. python -m sweep.multitask intent review")
    names = [c.study for c in chosen]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise MultitaskError(f"study {dup!r} is given twice (each study contributes one adapter)")
    for c in chosen:
        _refuse_method(c)
    ref = chosen[0]
    ref_cfg = flatten({g: getattr(ref.config, g).__dict__ for g in SHARED_GROUPS})
    for c in chosen[1:]:
        if ref.config.model.source in ("tiny", "shaped") and c.config.train.seed != ref.config.train.seed:
            raise MultitaskError(f"study {c.study!r}: train.seed={c.config.train.seed} differs from "
                                 f"{ref.config.train.seed} in study {ref.study!r}, and {ref.config.model.source} models draw their base weights from it ({_fix(c.study)})")
        cfg = flatten({g: getattr(c.config, g).__dict__ for g in SHARED_GROUPS})
        for key in ref_cfg:
            if cfg.get(key) != ref_cfg[key]:
                raise MultitaskError(f"study {c.study!r}: {key}={cfg.get(key)!r} differs from {ref_cfg[key]!r} in "
                                     f"study {ref.study!r} ({_fix(c.study)})")
        fa, fb = ref.meta.get("model_fingerprint"), c.meta.get("model_fingerprint")
        if fa and fb and fa != fb:
            raise MultitaskError(f"study {c.study!r}: model fingerprint {fb} differs from {fa} in study {ref.study!r}: "
                                 f"the same model config loaded other weights ({_fix(c.study)})")


def unsupported(chosen: list, head_sizes: dict[str, int]) -> dict[str, str]:
    """Feature -> why PEFT does not support it for these adapters, or how it is worked around ('' = native)."""
    out: dict[str, str] = {}
    dora = [c.study for c in chosen if c.config.lora.use_dora]
    if dora:
        out["mixed_batch"] = (f"unsupported: PEFT refuses adapter_names when DoRA is enabled (lora.use_dora in "
                              f"{', '.join(dora)}); serve such tasks by switching adapters")
    if "mixed_batch" not in out and len(set(head_sizes.values())) > 1:
        sizes = ", ".join(f"{k}: {v}" for k, v in head_sizes.items())
        out["mixed_batch_heads"] = (f"worked around: PEFT stacks per-row outputs of the classifier heads and fails for "
                                    f"heads of different sizes ({sizes} labels); rows are grouped by adapter for the head, "
                                    "the LoRA layers use PEFT's per-row adapter_names")
    if chosen[0].config.quant.enabled:
        out["merge"] = (f"lossy: merging into {chosen[0].config.quant.method} weights re-quantizes them; merged logits "
                        "differ from unmerged ones")
    return out
