"""Calibrate `instruct_llm` on the real SmolLM2-135M-Instruct: exact match per task kind.

The base model (no adapter) is scored zero-shot with the chat template, then each
LoRA configuration given on the command line is trained with the project's own
trial pieces (Trainer loop, encoding, evaluation) and scored the same way.

    .venv/bin/python benchmarks/calibrate_llm.py --base                        # the base model only
    .venv/bin/python benchmarks/calibrate_llm.py lora=qv lora.r=2 lora.alpha=2  # one LoRA config (Hydra overrides)
    .venv/bin/python benchmarks/calibrate_llm.py --base --show 5               # also print 5 answers per kind

Overrides are composed on top of `model=smollm2_135m data=instruct_llm train=llm`.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time

BASE = ["model=smollm2_135m", "data=instruct_llm", "train=llm", "tracking=none"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", action="store_true", help="score the base model without an adapter")
    ap.add_argument("--show", type=int, default=0, help="answers to print per kind")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides for a LoRA run")
    args = ap.parse_args(argv)

    from sweep.quiet import quiet_libraries

    quiet_libraries()
    import torch
    from transformers import set_seed

    from sweep import adapters
    from sweep.config.compose import compose
    from sweep.data import load_records
    from sweep.data.builtin_llm import kind_of
    from sweep.models.loader import build_model, eos_token_id, inventory, load_tokenizer
    from sweep.train import encode
    from sweep.train.engine import train
    from sweep.train.evaluate import evaluate

    cfg = compose([*BASE, *args.overrides]).trial
    t, d, m = cfg.train, cfg.data, cfg.model
    torch.set_num_threads(t.threads or 2)
    set_seed(t.seed)
    rec = load_records(task=d.task, source=d.source, name=d.name, train_file=None, eval_file=None, train_split="",
                       eval_split="", text_field="", label_field="", instruction_field="instruction",
                       input_field="input", output_field="output", train_size=d.train_size, eval_size=d.eval_size,
                       seed=t.seed)
    tok = load_tokenizer(m)
    eos = eos_token_id(tok)
    fmt = encode.resolve_prompt_format(d.prompt_format, tok)
    train_feats = encode.encode_instruction(rec.train, tok, d.max_seq_len, eos, fmt)
    eval_feats = encode.encode_instruction(rec.eval, tok, d.max_seq_len, eos, fmt)
    longest = max(len(f["input_ids"]) for f in train_feats + eval_feats)
    model = build_model(m, task=d.task, num_labels=None, quant=cfg.quant, seed=t.seed, device="cpu")
    label = "base (no adapter)"
    seconds = 0.0
    if not args.base:
        from peft import get_peft_model

        plan = adapters.plan(cfg.lora, inventory(m, d.task, None))
        set_seed(t.seed)
        model = get_peft_model(model, adapters.peft_config(cfg.lora, plan, task=d.task, total_steps=t.max_steps))
        collator = encode.Collator(pad_id=tok.pad_token_id, causal=True)
        out = train(model, train_feats, collator, cfg=t, device="cpu", eval_fn=dict, on_eval=lambda *a: False,
                    on_loss=lambda *a: None, adalora=False)
        seconds = out.seconds
        label = " ".join(args.overrides) or "defaults"
    preds: list[str] = []
    t0 = time.perf_counter()
    ev = evaluate(model, eval_feats, task=d.task, tok=tok, answers=[r["output"] for r in rec.eval],
                  batch_size=t.eval_batch_size, device="cpu", max_new_tokens=d.max_new_tokens, eos_id=eos,
                  predictions=preds)
    eval_s = time.perf_counter() - t0
    hits: dict[str, list[int]] = collections.defaultdict(list)
    shown: dict[str, int] = collections.Counter()
    for r, p in zip(rec.eval, preds):
        kind = kind_of(r)
        hits[kind].append(int(encode.normalise_answer(p) == encode.normalise_answer(r["output"])))
        if shown[kind] < args.show:
            shown[kind] += 1
            print(f"  {kind:12s} {r['input']!r:32s} -> {p!r} (gold {r['output']!r})")
    per_kind = "  ".join(f"{k} {sum(v) / len(v):.2f}" for k, v in hits.items())
    print(f"{label}: eval_accuracy {ev['eval_accuracy']:.4f} eval_loss {ev['eval_loss']:.3f} | {per_kind} | "
          f"prompt format {fmt}, longest example {longest} tokens, train {seconds:.0f} s, eval {eval_s:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
