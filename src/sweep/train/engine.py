"""The training loop: transformers' Trainer, with callbacks for curves, pruning, NaN and AdaLoRA.

The training time it reports covers the optimizer steps only: the intermediate evaluations
run inside its callbacks are timed and subtracted (and reported on their own).

Trainer is the ecosystem's standard loop (optimizer, scheduler, accumulation, mixed
precision, gradient checkpointing); the callbacks feed each intermediate
evaluation to a Reporter (the sweep's pruner) and stop on a non-finite loss.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable

from sweep.config.schema import TrainConfig


class NonFiniteLoss(RuntimeError):
    pass


@dataclass
class TrainOutcome:
    steps: int
    seconds: float  # the optimizer steps only: intermediate evaluations are not training time
    eval_seconds: float  # intermediate evaluations (and the pruner's answers) during training
    setup_seconds: float  # the Trainer's own setup and teardown around its loop (optimizer, accelerate, loader)
    samples: int
    tokens: int
    last_loss: float
    pruned_at: int | None
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)


def total_steps(train: TrainConfig, n_train: int) -> int:
    if train.max_steps is not None:
        return train.max_steps
    per_epoch = math.ceil(n_train / (train.batch_size * train.grad_accum))
    return max(1, math.ceil(train.epochs * per_epoch))


def _callbacks(*, eval_fn: Callable[[], dict], every: int, max_steps: int, on_eval: Callable[[int, dict], bool],
               on_loss: Callable[[int, float], None], adalora: bool, state: dict):
    from transformers import TrainerCallback

    class SweepCallback(TrainerCallback):
        def on_train_begin(self, args, st, control, **kw):
            state["loop_start"] = time.perf_counter()  # after the Trainer's setup (optimizer, accelerate, loader)

        def on_train_end(self, args, st, control, **kw):
            state["loop_end"] = time.perf_counter()

        def on_optimizer_step(self, args, st, control, model=None, **kw):
            if adalora:  # AdaLoRA reallocates rank between the optimizer step and zero_grad
                model.base_model.update_and_allocate(st.global_step)

        def on_log(self, args, st, control, logs=None, **kw):
            if logs and "loss" in logs:
                loss = float(logs["loss"])
                on_loss(st.global_step, loss)
                if not math.isfinite(loss):
                    state["nonfinite"] = st.global_step
                    control.should_training_stop = True

        def on_step_end(self, args, st, control, **kw):
            if every and st.global_step % every == 0 and st.global_step < max_steps:
                t0 = time.perf_counter()
                metrics = eval_fn()
                prune = on_eval(st.global_step, metrics)
                state["eval_s"] = state.get("eval_s", 0.0) + time.perf_counter() - t0  # not training time
                if prune:
                    state["pruned_at"] = st.global_step
                    control.should_training_stop = True

    return SweepCallback()


def loraplus_optimizer(model, args, ratio: float):
    """LoRA+ (PEFT's create_loraplus_optimizer): the optimizer `args.optim` names, built with transformers' own
    arguments for it, with B's (and 1-D parameters') learning rate `ratio` times A's; train.weight_decay on both
    groups, as PEFT groups them."""
    from peft.optimizers import create_loraplus_optimizer
    from transformers import Trainer

    cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    kwargs = {k: v for k, v in kwargs.items() if k != "params"}
    lr = kwargs.pop("lr", args.learning_rate)
    return create_loraplus_optimizer(model, cls, lr=lr, loraplus_lr_ratio=ratio,
                                     loraplus_weight_decay=args.weight_decay, **kwargs)


def train(model, train_feats: list[dict], collator, *, cfg: TrainConfig, device: str, eval_fn: Callable[[], dict],
          on_eval: Callable[[int, dict], bool], on_loss: Callable[[int, float], None], adalora: bool,
          loraplus_lr_ratio: float | None = None) -> TrainOutcome:
    """Train `model` in place with the optimizer `cfg.optimizer` names (transformers' `optim`), LoRA+ when
    `loraplus_lr_ratio` is set; raise NonFiniteLoss on a NaN/inf loss."""
    from transformers import PrinterCallback, Trainer, TrainingArguments

    steps = total_steps(cfg, len(train_feats))
    state: dict = {}
    with tempfile.TemporaryDirectory(prefix="lorasweep-trainer-") as out:
        args = TrainingArguments(
            output_dir=out,
            max_steps=steps,
            per_device_train_batch_size=cfg.batch_size,
            gradient_accumulation_steps=cfg.grad_accum,
            learning_rate=cfg.lr,
            warmup_steps=int(cfg.warmup_ratio * steps),
            weight_decay=cfg.weight_decay,
            lr_scheduler_type=cfg.scheduler,
            max_grad_norm=cfg.max_grad_norm,
            optim=cfg.optimizer,
            bf16=cfg.precision == "bf16",
            fp16=cfg.precision == "fp16",
            gradient_checkpointing=cfg.gradient_checkpointing,
            logging_steps=cfg.log_every,
            logging_nan_inf_filter=False,
            eval_strategy="no",
            save_strategy="no",
            report_to=[],
            disable_tqdm=True,
            seed=cfg.seed,
            data_seed=cfg.seed,
            use_cpu=not device.startswith("cuda"),
            dataloader_num_workers=0,
            remove_unused_columns=False,
        )
        placed = {d for d in (getattr(model, "hf_device_map", None) or {}).values() if d not in ("cpu", "disk")}
        if args.n_gpu > 1 and len(placed) < 2:  # (a model placed across several GPUs is not wrapped)
            raise RuntimeError(f"{args.n_gpu} GPUs are visible to one trial: the Trainer would wrap the model in "
                               "DataParallel (a larger effective batch under the same config hash); give the trial one "
                               "GPU (CUDA_VISIBLE_DEVICES=0; python -m sweep.trial and the sweep's workers do)")
        cb = _callbacks(eval_fn=eval_fn, every=cfg.eval_every, max_steps=steps, on_eval=on_eval, on_loss=on_loss,
                        adalora=adalora, state=state)
        optimizers = (loraplus_optimizer(model, args, loraplus_lr_ratio), None) if loraplus_lr_ratio else (None, None)
        trainer = Trainer(model=model, args=args, train_dataset=train_feats, data_collator=collator, callbacks=[cb],
                          optimizers=optimizers)
        trainer.remove_callback(PrinterCallback)  # curves go to the tracker, not to stdout
        t0 = time.perf_counter()
        result = trainer.train()
        if device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
        end = time.perf_counter()
        # the optimizer steps only: the Trainer's own setup and the intermediate evaluations are not training
        seconds = state.get("loop_end", end) - state.get("loop_start", t0) - state.get("eval_s", 0.0)
    if "nonfinite" in state:
        raise NonFiniteLoss(f"NaN/inf training loss at step {state['nonfinite']} (lower train.lr or use fp32)")
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return TrainOutcome(
        steps=int(result.global_step),
        seconds=seconds,
        eval_seconds=state.get("eval_s", 0.0),
        setup_seconds=max(0.0, (end - t0) - seconds - state.get("eval_s", 0.0)),
        samples=collator.samples_seen,
        tokens=collator.tokens_seen,
        last_loss=float(losses[-1]) if losses else float(result.training_loss),
        pruned_at=state.get("pruned_at"),
    )
