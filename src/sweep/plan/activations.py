"""Peak activation memory of one training step, from the model's shape: a formula, with its assumptions.

What autograd keeps between forward and backward was read off the graphs of real PEFT models (every node's saved
tensors, torch 2.13 / transformers 5.25 / PEFT 0.21 / bitsandbytes 0.50) and is counted tensor by tensor here; the
peak adds the largest transient on top. T = batch x sequence length (every position counts: a batch is planned at
data.max_seq_len, the longest one). Element sizes:
  e_s    the hidden states between layers: the embeddings' dtype (fp32 after prepare_model_for_kbit_training)
  e_lin  a block linear's output: 2 bytes under bf16/fp16 autocast, else e_s; a bitsandbytes 4/8-bit linear hands
         back its input's dtype, so with a quantized base e_lin = e_s even under autocast
  e_att  SDPA's tensors: 2 under autocast (SDPA itself autocasts), else e_lin
  e_l    the LoRA path: 2 under autocast, else the adapter's dtype (fp32: PEFT upcasts adapters)

Decoder layer (Llama, Mistral, Qwen2: RMSNorm, q/k/v/o, SwiGLU), when its input requires grad:
  2 T h x 4 + 2 T x 4   the two RMSNorm inputs, upcast to fp32 (RMSNorm keeps that copy), and their rsqrt
  T d (2 n_h + 2 n_kv') e_att + b n_h s x 4
                        SDPA's flash / memory-efficient kernels: rotated q, k, v, the output, the log-sum-exp;
                        n_kv' = n_h when the batch carries a padding mask (b > 1: transformers then repeats k/v for
                        grouped-query attention instead of using SDPA's enable_gqa), else n_kv
  3 T i e_lin           SwiGLU: gate (SiLU's input), SiLU's output, up
Encoder layer (BERT): 2 T h e_n LayerNorm inputs (e_n = 4 under autocast, else e_s) and their statistics, 2 T h
  dropout masks after the attention and FFN outputs, T i e_lin GELU input, attention q, k, v, output (4 T h e_att)
  and log-sum-exp on CUDA's memory-efficient kernel. CPU's SDPA has no dropout kernel and falls back to the math
  path: q, k^T, v (3 T h) and the probabilities three times (softmax, dropout noise, dropped: 3 b n_h s^2), in
  fp32 under CPU autocast.
Each adapted module (r = its rank, in = its input width):
  T r e_l               A's output (saved by B)
  dropout > 0           T in e_l, the dropped input A keeps, + T in m, the dropout mask (m = 1 byte: CUDA's fused
                        kernel keeps a bool mask; on CPU the float noise, 4 bytes)
  dropout = 0           A keeps its input: once per input shared by several modules (q, k, v read the same one)
                        when it already has the adapter's dtype, else a cast copy per module (T in e_l)
  DoRA                  + the base output and the LoRA output (2 T out e_lin)
Autocast keeps, for backward, the half-precision copy of every frozen fp32 weight it multiplies with an input that
  requires grad (2 bytes per weight: half an fp32 model, and the fp32 lm_head of a kbit-prepared LLM), and of every
  adapter weight.
Layer 0 keeps less when its input needs no gradient (frozen embeddings, no gradient checkpointing): no norm input,
  no dropout masks on q/k/v's input, no weight copies for q/k/v.
Head: a causal LM keeps the final norm's input and the fp32 log-probabilities (T V x 4); the backward of the loss
  then holds the NLL gradient and the log-softmax gradient beside them: 12 T V bytes at once, the step's peak for an
  LLM vocabulary. A classifier keeps a few (batch x hidden) tensors.
Gradient checkpointing (transformers' non-reentrant, per layer): each layer keeps only its input (T h e_s); the
  backward recomputes one layer at a time, so the peak is the larger of the loss's backward and one layer's
  activations (with its weight copies) plus the gradients in flight.
Transients: forward, one FFN intermediate (T i e_lin) beyond what is kept; backward of a layer, the gradients in
  flight (2 T max(h, i) e_lin; on CPU's math path also two probability gradients); a 4-bit base dequantizes one
  weight at a time (its size in the compute dtype). Inputs: ids, mask and labels (3 T x 8).
Not counted: the CUDA allocator's 512-byte rounding (well under 1 MiB for these models) and the (s x head_dim)
  rotary tables.

Checked against torch's MemTracker on this CPU (sweep.plan.simulate: fake tensors, and the trial's real model for
4-bit bases): within 1% on causal LMs (tiny Llama, SmolLM2-135M, fp32/bf16, LoRA/QLoRA, checkpointing on/off),
within 3% on MiniLM, a few hundredths of a MiB on the tiny classifiers; docs/memory-planning.md has the table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sweep.plan.build import ModelFacts

KERNELS = ("cuda", "cpu")


@dataclass(frozen=True)
class Activations:
    """Bytes of one training step's activations: what is kept for backward and the peak on top of it."""

    saved: int  # kept from forward to backward at the end of the forward pass
    peak: int  # the largest total of activations and transients during the step

    @property
    def transient(self) -> int:
        return self.peak - self.saved


def activation_bytes(f: ModelFacts, *, batch: int, seq: int, precision: str, gradient_checkpointing: bool,
                     lora_dropout: float, use_dora: bool = False, kernels: str = "cuda") -> Activations:
    """The formula of the module docstring for one step of `batch` x `seq` tokens."""
    if kernels not in KERNELS:
        raise ValueError(f"kernels must be one of {KERNELS}, got {kernels!r}")
    T = batch * seq
    h, i, L = f.hidden, f.intermediate, f.layers
    autocast = precision in ("bf16", "fp16")
    e_s = f.stream_bytes
    e_m = 2 if autocast else e_s
    # a bitsandbytes 4/8-bit linear hands back its input's dtype, autocast or not: with a quantized base the block
    # linears' outputs stay in the stream's dtype (fp32 after prepare_model_for_kbit_training)
    e_lin = e_s if f.quantized else e_m
    e_att = 2 if autocast else e_lin  # SDPA itself runs in half precision under autocast
    e_l = 2 if autocast else f.lora_bytes
    # dropout masks: CUDA's fused kernel keeps a bool mask; CPU keeps the float noise, in the dtype dropped (the
    # adapter's for LoRA dropout, which PEFT applies after casting to it; the matmul output's for BERT's own)
    lora_mask = 1 if kernels == "cuda" else f.lora_bytes
    hidden_mask = 1 if kernels == "cuda" else e_lin
    input_grads = gradient_checkpointing  # checkpointing asks the embeddings' output for a gradient

    math_path = f.family == "encoder" and kernels == "cpu" and f.attention_dropout > 0
    if f.family == "decoder":
        kv = f.heads if batch > 1 else f.kv_heads
        norms = 2 * T * h * 4 + 2 * T * 4
        attention = T * f.head_dim * (2 * f.heads + 2 * kv) * e_att + batch * f.heads * seq * 4
        ffn = 3 * T * i * e_lin
        layer = norms + attention + ffn
        layer0_less = T * h * 4 + T * 4  # norm1 keeps nothing when its input needs no gradient
    else:
        e_n = 4 if autocast else e_s
        norms = 2 * T * h * e_n + 4 * T * 4
        masks = 2 * T * h * hidden_mask if f.hidden_dropout > 0 else 0
        if math_path:  # CPU autocast runs this path in fp32
            e_a = 4 if autocast else e_lin
            attention = 3 * T * h * e_a + 3 * batch * f.heads * seq * seq * e_a
        else:
            attention = 4 * T * h * e_att + batch * f.heads * seq * 4
        layer = norms + masks + T * i * e_lin + attention
        layer0_less = 0
    # the dtype of each adapted module's input: the stream for q/k/v and gate/up (BERT: the layer input and the
    # attention block's LayerNorm output), attention's output for o, the FFN's product for down
    stream_in = {"attn_in": e_s, "attn_out": e_att, "mlp_in": e_s, "mlp_out": e_lin, "other": e_s}

    # the adapters, per layer (layer None: a module outside the blocks, counted once)
    per_layer: dict[int | None, int] = {}
    shared_inputs: set[tuple[int | None, str]] = set()
    layer0_masks = 0
    for a in f.adapted:
        b = T * a.r * e_l
        if lora_dropout > 0:
            b += T * a.in_features * (e_l + lora_mask)
            if a.layer == 0 and a.role == "attn_in":
                layer0_masks += T * a.in_features * lora_mask
        elif autocast or stream_in[a.role] != f.lora_bytes:
            b += T * a.in_features * e_l
        elif (a.layer, a.role) not in shared_inputs:
            shared_inputs.add((a.layer, a.role))
            b += T * a.in_features * stream_in[a.role]
        if use_dora:
            b += 2 * T * a.out_features * e_lin
        per_layer[a.layer] = per_layer.get(a.layer, 0) + b
    adapters_total = sum(per_layer.values())
    widest_adapted_layer = max((v for k, v in per_layer.items() if k is not None), default=0)

    final_norm = T * h * 4 + T * 4 if f.family == "decoder" else 0  # BERT's last LayerNorm is inside its last layer
    if f.task == "classification":
        head_saved = final_norm + 8 * batch * h * 4  # pooler and classifier inputs, small
        head_peak = 0
    else:
        head_saved = final_norm + T * f.vocab * 4  # the fp32 log-probabilities
        head_peak = 2 * T * f.vocab * 4  # NLL gradient + log-softmax gradient beside the log-probabilities
    # autocast keeps the half-precision copy of each frozen fp32 weight it multiplies with a gradient-carrying input
    # (the matmul's backward needs it), and of each adapter weight (its cast cache)
    casts: dict[int | None, int] = {}
    if autocast:
        for role, layer_i, n, elem in f.frozen_linears:
            if elem == 2 and precision == "bf16":
                continue  # a bf16 weight is used as it is
            if layer_i == 0 and role == "attn_in" and not input_grads:
                continue  # layer 0's q/k/v read the frozen embeddings: nothing to keep
            casts[layer_i] = casts.get(layer_i, 0) + n * 2
        adapter_casts = sum(math.prod(shape) * 2 for shape, elem in f.trainable if elem == 4)
    else:
        adapter_casts = 0
    layer_casts = {k: v for k, v in casts.items() if k is not None}
    head_casts = casts.get(None, 0)

    inputs = 3 * T * 8
    fw_transient = T * i * e_lin
    bw_transient = 2 * T * max(h, i) * e_lin
    if math_path:  # the probabilities' gradients
        bw_transient += 2 * batch * f.heads * seq * seq * (4 if autocast else e_lin)
    dequant = f.largest_dequant

    if not gradient_checkpointing:  # layer 0's input needs no gradient
        saved = inputs + L * layer + adapters_total + head_saved + sum(casts.values()) + adapter_casts
        saved -= layer0_less + layer0_masks
        peak = saved + max(fw_transient, bw_transient, head_peak) + dequant
    else:
        kept = inputs + L * T * h * e_s
        saved = kept + head_saved + head_casts + adapter_casts
        one_layer = layer + widest_adapted_layer + max(layer_casts.values(), default=0)
        peak = saved + max(head_peak, one_layer + bw_transient) + dequant
    return Activations(saved=int(saved), peak=int(peak))
