"""Does a trial spend its time training, and does its training loop run as fast as a plain PEFT loop?

Runs, in one process and interleaved (plain, trial, plain, trial, ...) so that a drift of the machine hits both:
  plain  a hand-written PEFT loop on the same model, data, batch, steps, optimizer and schedule: AdamW, linear
         warm-up/decay, gradient clipping, the same collator; only its optimizer steps are timed
  trial  run_trial(cfg) on the composed config (default: the qv_vs_all base config on the packaged MiniLM)
and prints, per pair and as medians with their range: samples/s of each loop, their ratio (goal: the trial's loop
within 5% of the plain one) and train_share = training / whole trial (goal: at least 70%), then the trial's wall
time split into its phases. A pair's two halves run back to back, so the spread of the pairs' ratios is the noise
the verdict is read against.

    python benchmarks/trial_efficiency.py [--repeats 5] [override ...]     e.g. train.max_steps=60 lora=all_linear
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
    ap.add_argument("--repeats", type=int, default=5, help="interleaved pairs (plain, trial); medians reported")
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
    # each pair ran back to back, so its ratio sees (nearly) the same machine: the pairs' spread is the noise
    ratios = [r.metrics["train_samples_per_s"] / p for r, p in zip(trials, plain)]
    shares = [r.metrics["train_share"] for r in trials]
    wall = statistics.median(r.duration_s for r in trials)
    phases = {k: statistics.median(r.meta["phases_s"][k] for r in trials) for k in trials[0].meta["phases_s"]}
    load = os.getloadavg()[0]
    print(f"\n{cfg.model.name}, lora={cfg.lora.targets} r={cfg.lora.r}, {cfg.train.max_steps} steps of batch "
          f"{cfg.train.batch_size}, eval_every={cfg.train.eval_every}; {os.cpu_count()} cores, load {load:.2f} at the "
          f"end; {args.repeats} interleaved pairs")
    print(f"{'pair':<6}{'plain samples/s':>16}{'trial samples/s':>16}{'ratio':>8}{'train_share':>13}")
    for i, (p, r, q, sh) in enumerate(zip(plain, trials, ratios, shares)):
        print(f"{i:<6}{p:>16.1f}{r.metrics['train_samples_per_s']:>16.1f}{q:>8.3f}{sh:>13.3f}")
    print(f"\n{'':<34}{'median':>8}{'range':>16}   goal")
    print(f"{'trial loop / plain loop':<34}{statistics.median(ratios):>8.3f}{_range(ratios):>16}   >= 0.95 "
          f"({_verdict(ratios, 0.95)})")
    print(f"{'train_share (training / trial)':<34}{statistics.median(shares):>8.3f}{_range(shares):>16}   >= 0.70 "
          f"({_verdict(shares, 0.70)})")
    print(f"\n{'trial wall time s (median)':<34}{wall:>8.1f}")
    for name, seconds in phases.items():
        print(f"{'  ' + name + ' s':<34}{seconds:>8.2f}   {seconds / wall:.0%} of the trial")


def _range(values: list[float]) -> str:
    return f"{min(values):.3f}-{max(values):.3f}"


def _verdict(values: list[float], goal: float) -> str:
    """By the median of the pairs, with how many pairs reached the goal on their own."""
    hit = sum(v >= goal for v in values)
    return f"{'met' if statistics.median(values) >= goal else 'NOT met'}; {hit} of {len(values)} pairs at the goal"


if __name__ == "__main__":
    main()
