"""Does a trial spend its time training, and does its training loop run as fast as a plain PEFT loop?

Runs, in one process and interleaved (plain, trial, plain, trial, ...) so that a drift of the machine hits both:
  plain  a hand-written PEFT loop on the same model, data, batch, steps, optimizer and schedule: AdamW, linear
         warm-up/decay, gradient clipping, the same collator; only its optimizer steps are timed
  trial  run_trial(cfg) on the composed config (default: the qv_vs_all base config on the packaged MiniLM)
and prints one table: samples/s of each loop, their ratio (goal: the trial's loop within 5% of the plain one), the
trial's wall time split into its phases, and train_share = training / whole trial (goal: at least 70%).

    python benchmarks/trial_efficiency.py [--repeats 2] [override ...]     e.g. train.max_steps=60 lora=all_linear
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def plain_loop(cfg, device: str = "cpu") -> float:
    """Samples/s of a plain PEFT training loop equivalent to the trial's (optimizer steps only)."""
    import torch
    from peft import get_peft_model
    from transformers import get_scheduler, set_seed

    from sweep import adapters
    from sweep.models.loader import build_model
    from sweep.train.encode import Collator
    from sweep.train.prepare import prepare

    t = cfg.train
    set_seed(t.seed)
    prep = prepare(cfg, device)
    base = build_model(cfg.model, task=cfg.data.task, num_labels=prep.num_labels, quant=cfg.quant, seed=t.seed, device=device)
    set_seed(t.seed)
    plan = adapters.plan(cfg.lora, prep.inventory)
    model = get_peft_model(base, adapters.peft_config(cfg.lora, plan, task=cfg.data.task, total_steps=t.max_steps))
    model.train()
    collate = Collator(prep.tok, causal=cfg.data.task != "classification")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    sched = get_scheduler(t.scheduler, opt, num_warmup_steps=int(t.warmup_ratio * t.max_steps), num_training_steps=t.max_steps)
    g = torch.Generator().manual_seed(t.seed)
    order = torch.randperm(len(prep.train_feats), generator=g).tolist()
    batches = [order[i:i + t.batch_size] for i in range(0, len(order) - t.batch_size + 1, t.batch_size)]
    t0 = time.perf_counter()
    for step in range(t.max_steps):
        idx = batches[step % len(batches)]
        batch = {k: v.to(device) for k, v in collate([prep.train_feats[i] for i in idx]).items()}
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, t.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - t0
    return collate.samples_seen / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=2, help="interleaved repeats of each (median reported)")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides of the trial config (default: +experiment=qv_vs_all)")
    args = ap.parse_args()

    from sweep.quiet import quiet_libraries

    quiet_libraries()
    import torch

    from sweep.config.compose import compose
    from sweep.trial import run_trial

    torch.set_num_threads(os.cpu_count() or 1)
    overrides = args.overrides or ["+experiment=qv_vs_all"]
    cfg = compose([*overrides, "tracking=none"]).trial
    plain_loop(cfg)  # warm imports, kernels and caches: neither side pays them
    plain, trials = [], []
    for _ in range(args.repeats):
        plain.append(plain_loop(cfg))
        trials.append(run_trial(cfg))
    bad = [r for r in trials if r.status.value != "COMPLETE"]
    if bad:
        sys.exit(f"trial failed: {bad[0].error}")
    trial_sps = statistics.median(r.metrics["train_samples_per_s"] for r in trials)
    plain_sps = statistics.median(plain)
    share = statistics.median(r.metrics["train_share"] for r in trials)
    wall = statistics.median(r.duration_s for r in trials)
    phases = {k: statistics.median(r.meta["phases_s"][k] for r in trials) for k in trials[0].meta["phases_s"]}
    print(f"\n{cfg.model.name}, lora={cfg.lora.targets} r={cfg.lora.r}, {cfg.train.max_steps} steps of batch "
          f"{cfg.train.batch_size}, eval_every={cfg.train.eval_every}; {os.cpu_count()} cores; median of {args.repeats} "
          "interleaved repeats")
    print(f"{'':<34}{'value':>10}   goal")
    print(f"{'plain PEFT loop samples/s':<34}{plain_sps:>10.1f}")
    print(f"{'trial training loop samples/s':<34}{trial_sps:>10.1f}")
    print(f"{'trial loop / plain loop':<34}{trial_sps / plain_sps:>10.3f}   >= 0.95")
    print(f"{'trial wall time s':<34}{wall:>10.1f}")
    for name, seconds in phases.items():
        print(f"{'  ' + name + ' s':<34}{seconds:>10.2f}   {seconds / wall:.0%} of the trial")
    print(f"{'train_share (training / trial)':<34}{share:>10.3f}   >= 0.70")


if __name__ == "__main__":
    main()
