"""One base model carrying K named adapters, a merged model per task, and mixed batches.

The base is rebuilt exactly as the trials built it (`sweep.models.loader.build_model`
with the study's model, quantization and seed). Each adapter is added under its study's
name and its saved weights loaded with PEFT's `set_peft_model_state_dict`; its classifier
head is the adapter's own trained copy (`modules_to_save`), so the base's random head
never serves. Tasks with different label counts have heads of different shapes, which
PEFT's loader cannot put on one base (the copy it makes has the base head's shape): the
copy is replaced by a Linear of the saved shape before the weights are loaded.
"""

from __future__ import annotations

import contextlib
import types
from pathlib import Path

from sweep.multitask import MultitaskError


def num_labels(c) -> int:
    """Label count of a study's task, read from its saved classifier head."""
    from safetensors import safe_open

    with safe_open(str(Path(c.adapter_dir) / "adapter_model.safetensors"), "pt") as f:
        heads = [k for k in f.keys() if "lora_" not in k and k.endswith(".weight")]
        if not heads:
            raise MultitaskError(f"study {c.study!r}: adapter {c.adapter_dir} has no classifier head (modules_to_save); "
                                 "it was not trained for sequence classification")
        return int(f.get_slice(heads[0]).get_shape()[0])


def build_base(c, device: str, labels: int | None = None):
    """The base model of study `c`, built as its trial built it."""
    from sweep.models.loader import build_model, set_cpu_inference_packing

    cfg = c.config
    base = build_model(cfg.model, task=cfg.data.task, num_labels=labels or num_labels(c), quant=cfg.quant,
                       seed=cfg.train.seed, device=device)
    if cfg.quant.enabled:
        set_cpu_inference_packing(base, False)  # as during the trial's evaluations (see set_cpu_inference_packing)
    return base


def _wrappers(model) -> list[tuple[str, object]]:
    from peft.utils.other import ModulesToSaveWrapper

    return [(n, m) for n, m in model.named_modules() if isinstance(m, ModulesToSaveWrapper)]


def _load_weights(model, name: str, adapter_dir: Path) -> None:
    import torch
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = load_file(str(adapter_dir / "adapter_model.safetensors"))
    for path, wrapper in _wrappers(model):
        saved = state.get(f"{path}.weight")
        head = wrapper.modules_to_save[name]
        if saved is None or tuple(saved.shape) == tuple(head.weight.shape):
            continue
        if not isinstance(head, torch.nn.Linear):
            raise MultitaskError(f"study {name!r}: head {path} is a {type(head).__name__} of another shape than the base's; "
                                 "only Linear heads can be resized for serving beside other tasks")
        wrapper.modules_to_save[name] = torch.nn.Linear(saved.shape[1], saved.shape[0], bias=f"{path}.bias" in state,
                                                        dtype=head.weight.dtype, device=head.weight.device)
    result = set_peft_model_state_dict(model, state, adapter_name=name)
    missing = [k for k in result.missing_keys if f".{name}." in k]
    if result.unexpected_keys or missing:
        bad = (result.unexpected_keys or missing)[0]
        raise MultitaskError(f"study {name!r}: adapter {adapter_dir} does not fit the shared base ({bad} "
                             f"{'unexpected' if result.unexpected_keys else 'missing'})")


def load_stack(chosen: list, device: str):
    """One base (the first study's) with every study's adapter under the study's name, in eval mode."""
    from peft import PeftConfig, get_peft_model

    model = None
    for c in chosen:
        pc = PeftConfig.from_pretrained(str(c.adapter_dir))
        pc.inference_mode = True
        if model is None:
            model = get_peft_model(build_base(c, device), pc, adapter_name=c.study)
        else:
            model.add_adapter(c.study, pc)
        _load_weights(model, c.study, Path(c.adapter_dir))
    model.eval()
    return model


def head_sizes(model) -> dict[str, int]:
    """Adapter name -> output width of its classifier head."""
    wrappers = _wrappers(model)
    if not wrappers:
        return {}
    _, head = wrappers[0]
    return {name: int(m.out_features) for name, m in head.modules_to_save.items()}


def load_merged(c, device: str):
    """Study `c`'s adapter merged into its own base (`merge_and_unload`): what a per-task deployment serves."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(build_base(c, device), str(c.adapter_dir))
    merged = model.merge_and_unload()
    merged.eval()
    return merged


def inference_packing(model, enabled: bool) -> None:
    """bitsandbytes CPU packing (see loader.set_cpu_inference_packing): off to reproduce evaluations, on for timing."""
    from sweep.models.loader import set_cpu_inference_packing

    set_cpu_inference_packing(model, enabled)


def _grouped_forward(self, x, *args, adapter_names=None, **kwargs):
    """A ModulesToSaveWrapper forward for mixed batches with heads of different widths: each adapter's rows go
    through its own head; rows are padded with NaN to the widest head (PEFT's own version stacks and fails)."""
    if adapter_names is None:
        return type(self).forward(self, x, *args, **kwargs)
    out = None
    width = max(int(m.out_features) for m in self.modules_to_save.values())
    for name in dict.fromkeys(adapter_names):
        rows = [i for i, a in enumerate(adapter_names) if a == name]
        head = self.original_module if name == "__base__" else self.modules_to_save[name]
        y = head(x[rows], *args, **kwargs)
        if out is None:
            out = y.new_full((x.shape[0], *y.shape[1:-1], width), float("nan"))
        out[rows, ..., : y.shape[-1]] = y
    return out


@contextlib.contextmanager
def grouped_heads(model):
    """Within the block, mixed batches route each row through its own adapter's head (see _grouped_forward)."""
    wrappers = [w for _, w in _wrappers(model)]
    for w in wrappers:
        w.forward = types.MethodType(_grouped_forward, w)
    try:
        yield
    finally:
        for w in wrappers:
            del w.forward


def mixed_forward(model, batch: dict, names: list[str], sizes: dict[str, int]):
    """One forward over rows that use different adapters; returns one logits row per input row (its head's width)."""
    import torch

    ctx = grouped_heads(model) if len(set(sizes[n] for n in names)) > 1 else contextlib.nullcontext()
    with torch.no_grad(), ctx:
        logits = model(**batch, adapter_names=names).logits
    return [logits[i, : sizes[n]] for i, n in enumerate(names)]
