"""Will it fit? The memory plan (sweep.plan), the device table, the optimizers and LoRA+ as config.

The exact parts are exact: the plan builds the adapted model on the meta device and must count the same bytes as the
trial's real model on this CPU (weights, adapter, gradients, optimizer state after a real step). The activations
are a formula: checked against torch's MemTracker on the same CPU (fake tensors, and the real model for 4-bit), and
for shape (monotone in batch and length, smaller with gradient checkpointing). Against a GPU: the `gpu` test.
"""

from __future__ import annotations

import math
import time

import pytest

from sweep import devices
from sweep.config.compose import compose
from sweep.config.errors import ConfigError

MIB = 2**20
TINY = ["train=fast", "data.train_size=64", "data.eval_size=32", "tracking=none"]


def _cfg(*overrides: str):
    return compose([*TINY, *overrides]).trial


def _labels(cfg) -> int | None:
    from sweep.plan.memory import num_labels_of

    return num_labels_of(cfg)[0]


def _real_adapted(cfg):
    """The trial's own construction on this CPU (real weights): base, kbit preparation, PEFT."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    from sweep import adapters
    from sweep.models.loader import build_model, inventory

    n = _labels(cfg)
    base = build_model(cfg.model, task=cfg.data.task, num_labels=n, quant=cfg.quant, seed=0, device="cpu")
    if cfg.quant.enabled and cfg.quant.prepare_kbit:
        base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=cfg.train.gradient_checkpointing)
    plan = adapters.plan(cfg.lora, inventory(cfg.model, cfg.data.task, n))
    return get_peft_model(base, adapters.peft_config(cfg.lora, plan, task=cfg.data.task, total_steps=10))


EXACT = [
    ("model=tiny_bert",),
    ("model=tiny_bert", "lora=all_linear", "lora.r=4"),
    ("model=tiny_bert", "quant=nf4"),
    ("model=tiny_bert", "quant=int8"),
    ("model=tiny_bert", "lora=dora"),
    ("model=tiny_llama", "data=instruct"),
    ("model=tiny_llama", "data=instruct", "lora=all_linear", "quant=nf4"),
    ("model=tiny_llama", "data=instruct", "quant=nf4_single", "model.dtype=bfloat16"),
    ("model=tiny_llama",),  # sequence classification: the trainable copy of the score head
]


@pytest.mark.parametrize("overrides", EXACT, ids=lambda o: " ".join(o))
def test_weights_adapter_and_gradients_are_exact_against_the_real_model(overrides):
    from sweep.measure.params import weights_mb
    from sweep.plan import plan_memory

    cfg = _cfg(*overrides)
    real = _real_adapted(cfg)
    plan = plan_memory(cfg)
    assert plan.weights_mb == weights_mb(real)  # the trial's weights_mb metric, to the byte
    trainable = [p for p in real.parameters() if p.requires_grad]
    assert plan.adapter_mb * MIB == sum(p.numel() * p.element_size() for p in trainable)
    assert plan.base_weights_mb * MIB == weights_mb(real) * MIB - sum(p.numel() * p.element_size() for p in trainable)
    import torch

    batch = {"input_ids": torch.randint(0, real.config.vocab_size, (2, 8)), "attention_mask": torch.ones(2, 8, dtype=torch.long)}
    batch["labels"] = batch["input_ids"] if cfg.data.task != "classification" else torch.zeros(2, dtype=torch.long)
    real.train()
    real(**batch).loss.backward()
    grads = sum(p.grad.numel() * p.grad.element_size() for p in trainable if p.grad is not None)
    assert plan.grads_mb * MIB == grads


def _state_bytes(opt) -> int:
    seen, total = set(), 0
    for state in opt.state.values():
        for v in state.values():
            if hasattr(v, "untyped_storage") and v.untyped_storage() not in seen:
                seen.add(v.untyped_storage())
                total += v.untyped_storage().nbytes()
    return total


@pytest.mark.parametrize("name", ["adamw_torch_fused", "adamw_torch", "adamw_8bit", "paged_adamw_8bit",
                                  "paged_adamw_32bit", "adafactor"])
def test_optimizer_state_equals_a_real_optimizers_after_one_step(name, tmp_path):
    """The optimizer the Trainer builds for the name (transformers' own mapping), one real step on this CPU."""
    import warnings

    from transformers import Trainer, TrainingArguments

    from sweep.plan.build import model_facts
    from sweep.plan.optimizer import state_bytes

    cfg = _cfg("model=tiny_bert", "lora=all_linear", "lora.r=64")  # A/B above and below bitsandbytes' 4096-element floor
    model = _real_adapted(cfg)
    args = TrainingArguments(output_dir=str(tmp_path), optim=name, use_cpu=True, report_to=[], learning_rate=1e-3)
    cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # paged optimizers warn that a CPU has no paging
        opt = cls(trainable, **{k: v for k, v in kwargs.items() if k != "params"})
        import torch

        ids = torch.randint(0, model.config.vocab_size, (2, 8))
        model(input_ids=ids, labels=torch.zeros(2, dtype=torch.long)).loss.backward()
        opt.step()
    planned = state_bytes(name, model_facts(cfg, _labels(cfg)).trainable, cuda=False)
    assert planned.paged_bytes == 0  # no paging on a CPU
    assert planned.device_bytes == _state_bytes(opt), name


def test_paged_optimizers_put_large_state_outside_the_allocator_on_cuda():
    from sweep.plan.optimizer import BNB_PAGED_MIN, state_bytes

    big, small = ((1024, 512), 4), ((4, 512), 4)  # small: under bitsandbytes' 4096-element 8-bit floor
    s = state_bytes("paged_adamw_32bit", (big, small), cuda=True)
    assert s.paged_bytes == 2 * 1024 * 512 * 4 and s.device_bytes == 2 * 4 * 512 * 4
    assert 1024 * 512 >= BNB_PAGED_MIN > 4 * 512
    eight = state_bytes("adamw_8bit", (big, small), cuda=True)
    assert eight.paged_bytes == 0
    assert eight.device_bytes == 2 * 1024 * 512 + 2 * math.ceil(1024 * 512 / 256) * 4 + 2 * 4 * 512 * 4 + 2 * 256 * 4
    factored = state_bytes("adafactor", (big,), cuda=True)
    assert factored.device_bytes == (1024 + 512) * 4 + 4  # rows + cols, and the RMS


def test_activations_grow_with_batch_and_length_and_shrink_with_checkpointing():
    from sweep.plan import plan_memory

    for overrides in (["model=llama3_1_8b", "data=instruct_llm", "train.precision=bf16"],
                      ["model=tiny_bert"], ["model=minilm", "lora=all_linear"]):
        cfg = compose(overrides).trial
        acts = [[plan_memory(cfg, batch_size=b, seq_len=s).activations_mb for s in (64, 128, 512)] for b in (1, 2, 8)]
        for row in acts:
            assert row == sorted(row) and len(set(row)) == 3, (overrides, row)
        for col in zip(*acts):
            assert list(col) == sorted(col) and len(set(col)) == 3, (overrides, col)
    llm = compose(["model=llama3_1_8b", "data=instruct_llm", "train.precision=bf16"]).trial
    gc = compose(["model=llama3_1_8b", "data=instruct_llm", "train.precision=bf16", "train.gradient_checkpointing=true"]).trial
    for b, s in ((1, 512), (4, 2048)):
        off, on = plan_memory(llm, batch_size=b, seq_len=s), plan_memory(gc, batch_size=b, seq_len=s)
        assert on.activations_mb < off.activations_mb / 3, (b, s, on.activations_mb, off.activations_mb)
        assert on.saved_activations_mb < off.saved_activations_mb


FORMULA_VS_TRACKER = [  # (overrides, batch, tokens, tolerance): the formula with CPU's kernels vs MemTracker's peak
    (["model=tiny_llama", "data=instruct"], 8, 32, 0.01),
    (["model=tiny_llama", "data=instruct", "lora=all_linear", "lora.dropout=0"], 4, 48, 0.01),
    (["model=tiny_llama", "data=instruct", "train.gradient_checkpointing=true"], 8, 32, 0.01),
    (["model=tiny_llama", "data=instruct", "train.precision=bf16"], 8, 32, 0.01),
    (["model=tiny_bert"], 8, 32, 0.03),
    (["model=minilm"], 8, 32, 0.03),
]


@pytest.mark.parametrize("overrides, batch, seq, tol", FORMULA_VS_TRACKER, ids=lambda v: " ".join(v) if isinstance(v, list) else str(v))
def test_the_formula_agrees_with_memtracker_on_fake_tensors(overrides, batch, seq, tol):
    from sweep.plan import plan_memory
    from sweep.plan.simulate import simulate

    cfg = compose(overrides).trial
    n = _labels(cfg)
    plan = plan_memory(cfg, num_labels=n, batch_size=batch, seq_len=seq, kernels="cpu")
    sim = simulate(cfg, num_labels=n, batch=batch, seq=seq)
    assert sim.weights == pytest.approx(plan.weights_mb * MIB, rel=1e-6)
    assert sim.optimizer == pytest.approx(plan.optimizer_mb * MIB, rel=1e-6)
    assert plan.allocator_peak_mb * MIB == pytest.approx(sim.peak, rel=tol)


def test_the_formula_agrees_with_a_real_4bit_step_on_this_cpu():
    from sweep.plan import plan_memory
    from sweep.plan.simulate import simulate

    cfg = compose(["model=tiny_llama", "data=instruct", "quant=nf4", "lora=all_linear",
                   "train.gradient_checkpointing=true"]).trial
    plan = plan_memory(cfg, batch_size=8, seq_len=32, kernels="cpu")
    real = simulate(cfg, num_labels=None, batch=8, seq=32, real=True)
    assert plan.allocator_peak_mb * MIB == pytest.approx(real.peak, rel=0.01)


def test_the_simulation_fails_loudly_outside_the_torch_range_it_was_written_for(monkeypatch):
    from importlib import metadata

    from sweep.plan import simulate as sim

    real_version = metadata.version
    monkeypatch.setattr(metadata, "version", lambda name: "2.99.0" if name == "torch" else real_version(name))
    with pytest.raises(sim.SimulationUnavailable) as exc:
        sim.simulate(compose(["model=tiny_bert"]).trial, num_labels=2)
    assert "torch 2.99.0" in str(exc.value) and sim.TORCH_RANGE in str(exc.value) and "formula" in str(exc.value)
    monkeypatch.undo()
    with pytest.raises(sim.SimulationUnavailable, match="quantized"):
        sim.simulate(compose(["model=tiny_bert", "quant=nf4"]).trial, num_labels=2)


def test_largest_batch_is_the_boundary_of_fits():
    from sweep.plan import largest_batch, plan_memory

    cfg = compose(["model=llama3_1_8b", "data=instruct_llm", "train.precision=bf16", "quant=nf4",
                   "quant.compute_dtype=bfloat16", "train.gradient_checkpointing=true", "data.max_seq_len=1024"]).trial
    budget = 24 * 1024
    best = largest_batch(cfg, budget)
    assert best >= 1
    assert plan_memory(cfg, batch_size=best).fits(budget) and not plan_memory(cfg, batch_size=best + 1).fits(budget)
    assert largest_batch(cfg, 1024) == 0  # not even the weights fit 1 GiB


def test_shipped_configs_build_the_published_parameter_counts():
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from sweep.models.configs import SHIPPED, shipped_config_dir

    published = {"meta-llama/Llama-3.1-8B": 8.03e9, "Qwen/Qwen2.5-7B": 7.62e9, "mistralai/Mistral-7B-v0.3": 7.25e9}
    assert set(SHIPPED) == set(published)
    for hub_id, count in published.items():
        cfg = AutoConfig.from_pretrained(str(shipped_config_dir(hub_id)))
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(cfg)
        assert sum(p.numel() for p in model.parameters()) == pytest.approx(count, rel=0.005), hub_id
        assert cfg.torch_dtype == torch.bfloat16 and cfg.tie_word_embeddings is False


def test_the_8b_models_plan_offline_and_qlora_saves_weights():
    from sweep.plan import plan_memory

    for model in ("llama3_1_8b", "qwen2_5_7b", "mistral_7b_v0_3"):
        full = plan_memory(compose([f"model={model}", "data=instruct_llm"]).trial)
        nf4 = plan_memory(compose([f"model={model}", "data=instruct_llm", "quant=nf4"]).trial)
        assert 13_000 < full.base_weights_mb < 16_000, (model, full.base_weights_mb)  # ~7-8B params in bf16
        assert nf4.base_weights_mb < 0.6 * full.base_weights_mb, (model, nf4.base_weights_mb)


# the CLI -------------------------------------------------------------------------------------------------------


def _table_rows(out: str) -> list[str]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if set(line.replace(" ", "")) == {"-"})
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("parts in MiB"))
    return lines[start + 1:end]


def test_the_cli_prints_a_row_per_grid_config_of_qv_vs_all(capsys):
    from sweep.orchestration.space import grid_size
    from sweep.plan.__main__ import main

    t0 = time.perf_counter()
    assert main(["+experiment=qv_vs_all", "--gpu", "t4"]) == 0
    seconds = time.perf_counter() - t0
    out = capsys.readouterr().out
    rows = _table_rows(out)
    assert len(rows) == grid_size(compose(["+experiment=qv_vs_all"]).sweep.space) == 640
    assert "640 configs (the whole grid)" in out and "Tesla T4 (15,360 MiB)" in out
    assert all(r.split()[-2] in ("yes", "no") for r in rows)
    assert seconds < 300, f"{seconds:.0f} s for 640 plans"  # seconds, not minutes (about 20 s on a loaded 2-core box)


def test_the_cli_samples_a_conditional_space_and_says_so(capsys):
    from sweep.plan.__main__ import main

    assert main(["+experiment=layerwise_ranks", "--sample", "5", "--seed", "3", "--device-memory", "8GiB"]) == 0
    out = capsys.readouterr().out
    assert "5 configs sampled at random" in out and "seed 3" in out and "8GiB of device memory (8,192 MiB)" in out
    assert len(_table_rows(out)) == 5


def test_fit_24gb_composes_and_plans(capsys):
    from sweep.plan.__main__ import main

    run = compose(["+experiment=fit_24gb"])
    assert run.trial.model.path == "meta-llama/Llama-3.1-8B" and run.sweep.sampler == "grid"
    assert main(["+experiment=fit_24gb"]) == 0
    out = capsys.readouterr().out
    rows = _table_rows(out)
    assert len(rows) == 128 and "generic 24 GiB GPU (24,576 MiB)" in out
    fits = [r.split()[-2] for r in rows]
    assert "yes" in fits and "no" in fits  # the question has answers both ways


@pytest.mark.parametrize("argv, flag, fix", [
    (["--gpu", "a100"], "--gpu", "known: a100-80gb"),
    (["--device-memory", "lots"], "--device-memory", "24GiB"),
    (["--gpu", "t4", "--device-memory", "16GiB"], "--gpu and --device-memory", "give one of them"),
    (["--sample", "0"], "--sample", ">= 1"),
    (["--gpus", "t4"], "--gpus", "unknown flag"),
])
def test_bad_arguments_are_one_line_errors_with_the_flag_and_the_fix(argv, flag, fix, capsys):
    from sweep.plan.__main__ import main

    assert main(["+experiment=smoke", *argv]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and flag in err and fix in err, err
    assert captured.out == ""


# the device table and the cost group -----------------------------------------------------------------------------


def test_the_device_table():
    assert len({d.id for d in devices.DEVICES}) == len(devices.DEVICES)
    assert set(devices.BY_ID) >= {"a100-80gb", "h100-80gb", "h200", "l4", "rtx4090", "a10g", "t4", "rtx-a6000", "24gb"}
    assert devices.by_name("NVIDIA H100 80GB HBM3").id == "h100-80gb" and devices.by_name("tesla t4").id == "t4"
    for d in devices.DEVICES:
        assert d.memory_mib > 10_000
        assert (d.price_usd_h is None) == (d.price_source is None), d.id
        dense = [t for t in d.tflops.values() if t is not None]
        assert all(0 < t < 2000 for t in dense), d.id  # dense figures: no H100 sparse 1979
    assert devices.by_id("a100-80gb").peak_flops("bf16") == 312e12
    with pytest.raises(KeyError, match="known: a100-80gb"):
        devices.by_id("nope")


def test_the_cost_group_reads_the_device_table():
    cost = compose(["cost=a100_cloud"]).cost
    assert cost.device == "a100-80gb" and cost.hardware == "NVIDIA A100-SXM4-80GB" and cost.price_per_device_hour == 4.0
    t4 = compose(["cost=a100_cloud", "cost.device=t4", "cost.price_per_device_hour=null"]).cost
    assert t4.hardware == "Tesla T4" and t4.price_per_device_hour == devices.by_id("t4").price_usd_h
    with pytest.raises(ConfigError) as exc:
        compose(["cost=a100_cloud", "cost.price_per_device_hour=null"])  # no A100 price in the table
    assert "cost.price_per_device_hour" in str(exc.value) and "a100-80gb" in str(exc.value)
    with pytest.raises(ConfigError, match="cost.device"):
        compose(["cost.device=a100"])


# optimizers and LoRA+ as config ------------------------------------------------------------------------------------


def test_optimizer_and_loraplus_are_validated_together():
    with pytest.raises(ConfigError) as exc:
        compose(["train.optimizer=sgd", "lora.loraplus_lr_ratio=0.5"])
    text = str(exc.value)
    assert "train.optimizer" in text and "adamw_torch_fused" in text  # the key and the choices
    assert "lora.loraplus_lr_ratio" in text and "16" in text  # the key and the fix
    with pytest.raises(ConfigError, match="lora.loraplus_lr_ratio.*adalora"):
        compose(["lora=adalora", "lora.loraplus_lr_ratio=16"])
    assert compose([]).trial.train.optimizer == "adamw_torch_fused"  # what the Trainer picked before the key existed
    assert compose([]).trial.lora.loraplus_lr_ratio is None


def test_loraplus_gives_b_its_own_learning_rate(tmp_path):
    from transformers import TrainingArguments

    from sweep.train.engine import loraplus_optimizer

    model = _real_adapted(_cfg("model=tiny_bert"))
    args = TrainingArguments(output_dir=str(tmp_path), optim="adamw_torch", use_cpu=True, report_to=[],
                             learning_rate=1e-3)
    opt = loraplus_optimizer(model, args, 16.0)
    names = {id(p): n for n, p in model.named_parameters()}
    for group in opt.param_groups:
        for p in group["params"]:
            b_side = "lora_B" in names[id(p)] or p.ndim == 1
            assert group["lr"] == pytest.approx(16e-3 if b_side else 1e-3), names[id(p)]
    assert sum(len(g["params"]) for g in opt.param_groups) == sum(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("overrides", [("train.optimizer=adamw_8bit", "lora.loraplus_lr_ratio=16"),
                                       ("train.optimizer=adafactor",)])
def test_a_trial_trains_with_another_optimizer_and_loraplus(overrides, tmp_path):
    from sweep.results import TrialStatus
    from sweep.trial import run_trial

    cfg = _cfg("model=tiny_bert", "train.max_steps=2", "train.eval_every=0", "train.save_adapter=false", *overrides)
    result = run_trial(cfg, output_dir=tmp_path / "t")
    assert result.status is TrialStatus.COMPLETE, result.error


# on a GPU --------------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("overrides, batch, seq", [
    (["model=tiny_llama", "data=instruct"], 8, 64),
    (["model=tiny_bert"], 16, 64),
    (["model=minilm_shaped", "lora=all_linear"], 16, 128),
    (["model=minilm_shaped", "train.precision=bf16"], 32, 128),
    (["model=minilm_shaped", "lora.r=64", "train.precision=bf16"], 32, 256),
    (["model=smollm2_135m_shaped", "data=instruct_llm", "lora=qv"], 4, 256),
    (["model=smollm2_135m_shaped", "data=instruct_llm", "lora=all_linear", "train.precision=bf16"], 8, 256),
    (["model=smollm2_135m_shaped", "data=instruct_llm", "quant=nf4", "train.precision=bf16"], 8, 256),
    (["model=smollm2_135m_shaped", "data=instruct_llm", "quant=nf4", "train.precision=bf16",
      "train.gradient_checkpointing=true"], 8, 512),
    (["model=smollm2_135m_shaped", "data=instruct_llm", "train.precision=bf16", "lora.r=64",
      "train.gradient_checkpointing=true"], 16, 512),
])
def test_allocator_peak_is_within_10_percent_of_max_memory_allocated(overrides, batch, seq):
    """Two steps of the trial's own model on the GPU, as the Trainer runs them (autocast, gradient checkpointing,
    fused AdamW); the planned allocator peak against torch.cuda.max_memory_allocated(). MiniLM and SmolLM2 by their
    shipped shapes (random weights: the same memory as the real ones), across r, targets, NF4 vs bf16, batch, length
    and gradient checkpointing."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    from sweep.plan import plan_memory
    from sweep.plan.simulate import _real_model

    cfg = compose([*overrides, "train.device=cuda"]).trial
    n = _labels(cfg)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    model, vocab = _real_model(cfg, n, device="cuda")
    model.to("cuda").train()
    if cfg.train.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    ids = torch.randint(0, vocab, (batch, seq), device="cuda")
    mask = torch.ones(batch, seq, dtype=torch.long, device="cuda")
    mask[0, -1] = 0
    labels = ids.clone() if cfg.data.task != "classification" else torch.zeros(batch, dtype=torch.long, device="cuda")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, fused=True)
    autocast = cfg.train.precision == "bf16"
    for _ in range(2):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        del loss
    torch.cuda.synchronize()
    measured = (torch.cuda.max_memory_allocated() - base) / MIB
    cap = torch.cuda.get_device_capability()
    plan = plan_memory(cfg, num_labels=n, batch_size=batch, seq_len=seq, compute_capability=cap)
    assert plan.allocator_peak_mb == pytest.approx(measured, rel=0.10), (plan.parts(), measured)
