"""The adapted model of a trial config on the meta device: the trial's own construction, no weights, no memory.

Mirrors sweep.trial step for step: the base model from its config (sweep.models.loader.auto_config, offline for
the hub models whose config.json ships with lorasweep), quantized with bitsandbytes' own layers (transformers'
quantizer replaces the linears, bitsandbytes' quantize_4bit packs each meta weight, so 4-bit weights, block
scales and double-quantization state have their real shapes), peft.prepare_model_for_kbit_training when the trial
runs it (it upcasts the unquantized weights to fp32), then get_peft_model with sweep.adapters' plan. What is read
off it (ModelFacts) is exact: the bytes weights_mb counts, the trainable tensors, the adapted modules.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, replace

from sweep.config.errors import ConfigError
from sweep.config.schema import TrialConfig

MIB = 2**20


@dataclass(frozen=True)
class Adapted:
    """One adapted linear module: where it sits (decides which activation it reads), its shape and rank."""

    name: str
    role: str  # attn_in (q/k/v) | attn_out (o) | mlp_in (gate/up, BERT intermediate) | mlp_out (down) | other
    in_features: int
    out_features: int
    layer: int | None
    r: int


@dataclass(frozen=True)
class ModelFacts:
    """What the memory plan needs from a model, read off the adapted meta model (sizes in bytes)."""

    model_type: str
    family: str  # decoder (Llama-style: q/k/v/o, gate/up/down, RMSNorm) | encoder (BERT-style)
    task: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    num_labels: int | None
    attention_dropout: float
    hidden_dropout: float
    stored_bytes: int  # measure.params.weights_mb of the adapted model, in bytes: the trial's weights_mb
    trainable: tuple[tuple[tuple[int, ...], int], ...]  # (shape, element size) of every trainable tensor
    stream_bytes: int  # element size of the hidden states between layers (the embeddings' dtype)
    lora_bytes: int  # element size of the adapter weights (PEFT keeps them in fp32)
    adapted: tuple[Adapted, ...]
    quantized: bool  # the block linears are bitsandbytes 4/8-bit layers (their outputs keep the input's dtype)
    largest_dequant: int  # bytes of the largest 4-bit weight dequantized on the fly (its dtype, then the compute one)
    frozen_linears: tuple[tuple[str, int | None, int, int], ...]  # (role, layer, elements, element size) of each
    # frozen float linear weight a forward multiplies with (autocast keeps a half-precision copy of it for backward)

    @property
    def trainable_bytes(self) -> int:
        return sum(math.prod(s) * e for s, e in self.trainable)


DECODER_TYPES = ("llama", "mistral", "qwen2")  # the same layer (Llama's): checked on Llama shapes
ENCODER_TYPES = ("bert",)
ROLES_DECODER = {"q_proj": "attn_in", "k_proj": "attn_in", "v_proj": "attn_in", "o_proj": "attn_out",
                 "gate_proj": "mlp_in", "up_proj": "mlp_in", "down_proj": "mlp_out"}


def role_of(family: str, name: str) -> str:
    """Which activation an adapted module reads, from its name."""
    leaf = name.rsplit(".", 1)[-1]
    if family == "decoder":
        return ROLES_DECODER.get(leaf, "other")
    if name.endswith(("attention.self.query", "attention.self.key", "attention.self.value")):
        return "attn_in"
    if name.endswith("attention.output.dense"):
        return "attn_out"
    if name.endswith("intermediate.dense"):
        return "mlp_in"
    if name.endswith("output.dense"):
        return "mlp_out"
    return "other"


def family_of(model_type: str) -> str:
    if model_type in DECODER_TYPES:
        return "decoder"
    if model_type in ENCODER_TYPES:
        return "encoder"
    raise ConfigError([f"model: sweep.plan has no activation model for model_type {model_type!r} (it plans "
                       f"{', '.join(DECODER_TYPES + ENCODER_TYPES)}); plan a model of one of these types"])


def planning_config(cfg: TrialConfig) -> TrialConfig:
    """The config whose structure is planned: an initialisation that reads the weights (PiSSA, OLoRA) has nothing
    to read on the meta device and changes no shape, so the default one stands in."""
    if cfg.lora.init == "default":
        return cfg
    return replace(cfg, lora=replace(cfg.lora, init="default"))


def meta_model(cfg: TrialConfig, num_labels: int | None, total_steps: int = 100):
    """The adapted model of `cfg` on the meta device, built as sweep.trial builds it."""
    import torch
    from peft import get_peft_model, prepare_model_for_kbit_training

    from sweep import adapters
    from sweep.models.loader import _auto_class, _dtype, auto_config, inventory, quantization_config

    cfg = planning_config(cfg)
    m, d, q, t = cfg.model, cfg.data, cfg.quant, cfg.train
    hf = auto_config(m, d.task, num_labels, structure_only=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.device("meta"):
            model = _auto_class(d.task).from_config(hf, dtype=_dtype(m.dtype))
        qcfg = quantization_config(q)
        if qcfg is not None:
            _quantize_on_meta(model, qcfg, _dtype(m.dtype))
        if q.enabled and q.prepare_kbit:
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=t.gradient_checkpointing)
        plan = adapters.plan(cfg.lora, inventory(m, d.task, num_labels))
        with torch.device("meta"):
            model = get_peft_model(model, adapters.peft_config(cfg.lora, plan, task=d.task, total_steps=total_steps))
    return model, hf, plan


def _quantize_on_meta(model, qcfg, dtype) -> None:
    """transformers' bitsandbytes quantizer on a meta skeleton, then each weight packed by bitsandbytes itself, from
    `dtype` (the checkpoint's values arrive in model.dtype; the fresh bitsandbytes layers are fp32 until then)."""
    import torch
    from bitsandbytes.functional import quantize_4bit, quantize_blockwise
    from bitsandbytes.nn import Linear4bit, Linear8bitLt
    from transformers.quantizers import AutoHfQuantizer

    # bitsandbytes caches its 8-bit code table (double quantization's) on the device of the first tensor it quantizes:
    # make that first one a CPU tensor, or a real model quantized later in this process would get a meta table
    quantize_blockwise(torch.zeros(256))

    quantizer = AutoHfQuantizer.from_config(qcfg, pre_quantized=False)
    quantizer.preprocess_model(model, device_map={"": "meta"})
    for mod in model.modules():
        if isinstance(mod, Linear4bit):
            w = mod.weight
            packed, state = quantize_4bit(w.data.to(dtype), blocksize=w.blocksize, compress_statistics=w.compress_statistics,
                                          quant_type=w.quant_type, quant_storage=w.quant_storage)
            w.data, w.quant_state, w.bnb_quantized = packed, state, True
            mod.quant_state = state
        elif isinstance(mod, Linear8bitLt):
            w = mod.weight
            rows = w.shape[0]
            w.data = torch.empty(w.shape, dtype=torch.int8, device="meta")
            w.CB, w.SCB = w.data, torch.empty(rows, dtype=torch.float32, device="meta")
    quantizer.postprocess_model(model)


def facts_of(model, hf, plan, cfg: TrialConfig, num_labels: int | None) -> ModelFacts:
    """ModelFacts of an adapted model (meta or real: the same numbers either way)."""
    import torch

    from sweep.measure.params import weights_mb
    from sweep.models.targets import layer_index

    model_type = hf.model_type
    family = family_of(model_type)
    seen, trainable = set(), []
    for p in model.parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            trainable.append((tuple(p.shape), p.element_size()))
    emb = model.get_input_embeddings().weight
    lora_bytes = next((p.element_size() for n, p in model.named_parameters() if "lora_A" in n), 4)
    largest_dequant, quantized = 0, False
    frozen = []
    for name, mod in model.named_modules():
        w = getattr(mod, "weight", None)
        if w is None or w.requires_grad or not isinstance(mod, torch.nn.Linear) or ".original_module" in name:
            continue  # (a head PEFT trains keeps its frozen original aside, unused)
        if type(mod).__module__.startswith("bitsandbytes."):
            quantized = True
        qs = getattr(w, "quant_state", None)
        if qs is not None:  # dequantize_4bit gives the weight's own dtype, then the matmul casts to the compute one
            own = torch.empty((), dtype=qs.dtype).element_size()
            compute = getattr(mod, "compute_dtype", None) or qs.dtype
            cast = torch.empty((), dtype=compute).element_size() if compute != qs.dtype else 0
            largest_dequant = max(largest_dequant, int(torch.Size(qs.shape).numel()) * (own + cast))
        elif w.dtype in (torch.float32, torch.float16, torch.bfloat16) and type(mod).__module__.startswith("torch."):
            owner = name[: -len(".base_layer")] if name.endswith(".base_layer") else name
            frozen.append((role_of(family, owner) if layer_index(owner) is not None else "head", layer_index(owner),
                           w.numel(), w.element_size()))
    heads = hf.num_attention_heads
    head_dim = getattr(hf, "head_dim", None) or hf.hidden_size // heads
    adapted = tuple(Adapted(lm.name, role_of(family, lm.name), lm.in_features, lm.out_features, lm.layer,
                            plan.ranks[lm.name]) for lm in plan.modules)
    return ModelFacts(
        model_type=model_type, family=family, task=cfg.data.task, hidden=hf.hidden_size,
        intermediate=hf.intermediate_size, layers=hf.num_hidden_layers, heads=heads,
        kv_heads=getattr(hf, "num_key_value_heads", None) or heads, head_dim=head_dim, vocab=hf.vocab_size,
        num_labels=num_labels,
        attention_dropout=float(getattr(hf, "attention_dropout", None) or getattr(hf, "attention_probs_dropout_prob", 0.0) or 0.0),
        hidden_dropout=float(getattr(hf, "hidden_dropout_prob", 0.0) or 0.0) if family == "encoder" else 0.0,
        stored_bytes=round(weights_mb(model) * MIB), trainable=tuple(trainable), stream_bytes=emb.element_size(),
        lora_bytes=lora_bytes, adapted=adapted, quantized=quantized, largest_dequant=largest_dequant,
        frozen_linears=tuple(frozen))


def structure_key(cfg: TrialConfig, num_labels: int | None) -> str:
    """What decides the built model's shapes: two configs with the same key have the same ModelFacts."""
    lora = asdict(cfg.lora)
    for k in ("alpha", "alpha_ratio", "dropout", "init", "use_rslora", "loraplus_lr_ratio", "adalora_tinit",
              "adalora_tfinal", "adalora_delta_t", "adalora_orth_reg_weight"):
        lora.pop(k, None)
    quant = asdict(cfg.quant) if cfg.quant.enabled else {"method": "none"}
    return json.dumps([asdict(cfg.model), cfg.data.task, num_labels, lora, quant], sort_keys=True, default=str)


def model_facts(cfg: TrialConfig, num_labels: int | None) -> ModelFacts:
    """ModelFacts of a trial config's adapted model, built on the meta device once per structure."""
    key = structure_key(cfg, num_labels)
    facts = _FACTS.get(key)
    if facts is None:
        model, hf, plan = meta_model(cfg, num_labels)
        if len(_FACTS) >= 256:  # a long-lived process planning many structures: start over
            _FACTS.clear()
        facts = _FACTS[key] = facts_of(model, hf, plan, cfg, num_labels)
    return facts


def trainable_params(cfg: TrialConfig, num_labels: int | None) -> int:
    """The adapted model's trainable parameters, counted as the trial counts them (sweep.measure.params), on the
    meta device, once per structure; for any model transformers builds (not only those sweep.plan plans)."""
    from sweep.measure.params import count_params

    key = structure_key(cfg, num_labels)
    n = _TRAINABLE.get(key)
    if n is None:
        model, hf, plan = meta_model(cfg, num_labels)
        if len(_TRAINABLE) >= 256:
            _TRAINABLE.clear()
        n = _TRAINABLE[key] = int(count_params(model)["trainable_params"])
        if key not in _FACTS and hf.model_type in DECODER_TYPES + ENCODER_TYPES:  # the memory plan's build, done
            _FACTS[key] = facts_of(model, hf, plan, cfg, num_labels)
    return n


_FACTS: dict[str, ModelFacts] = {}  # structure_key -> facts (a CLI plans hundreds of configs of a few structures)
_TRAINABLE: dict[str, int] = {}  # structure_key -> trainable parameters
