"""Tokenisation and batching for the two tasks.

Classification: `text` -> input ids, `label` -> class id.
Instruction tuning: a fixed prompt template; the loss covers only the answer and
its end token (prompt positions are labelled -100).
"""

from __future__ import annotations

from dataclasses import dataclass, field

PROMPT_TEMPLATE = "instruction: {instruction} input: {input} answer:"


def prompt_text(rec: dict) -> str:
    return PROMPT_TEMPLATE.format(instruction=rec["instruction"], input=rec.get("input", ""))


def normalise_answer(text: str) -> str:
    return " ".join(text.lower().split())


def encode_classification(records: list[dict], tok, max_len: int) -> list[dict]:
    enc = tok([r["text"] for r in records], truncation=True, max_length=max_len)
    return [{"input_ids": ids, "labels": int(r["label"])} for ids, r in zip(enc["input_ids"], records)]


def encode_instruction(records: list[dict], tok, max_len: int, eos_id: int) -> list[dict]:
    out = []
    for r in records:
        p = tok(prompt_text(r), add_special_tokens=False)["input_ids"]
        a = tok(" " + r["output"], add_special_tokens=False)["input_ids"] + [eos_id]
        p = p[: max(1, max_len - len(a))]
        ids = (p + a)[:max_len]
        labels = ([-100] * len(p) + a)[:max_len]
        out.append({"input_ids": ids, "labels": labels, "prompt_len": len(p)})
    return out


@dataclass
class Collator:
    """Right-pads a list of encoded examples; counts the real tokens it has batched."""

    pad_id: int
    causal: bool
    tokens_seen: int = 0
    samples_seen: int = 0
    counting: bool = field(default=True)

    def __call__(self, feats: list[dict]):
        import torch

        width = max(len(f["input_ids"]) for f in feats)
        ids = torch.full((len(feats), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(feats), width), dtype=torch.long)
        for i, f in enumerate(feats):
            n = len(f["input_ids"])
            ids[i, :n] = torch.tensor(f["input_ids"])
            mask[i, :n] = 1
        if self.causal:
            labels = torch.full((len(feats), width), -100, dtype=torch.long)
            for i, f in enumerate(feats):
                labels[i, : len(f["labels"])] = torch.tensor(f["labels"])
        else:
            labels = torch.tensor([f["labels"] for f in feats], dtype=torch.long)
        if self.counting:
            self.tokens_seen += int(mask.sum())
            self.samples_seen += len(feats)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def left_padded_prompts(feats: list[dict], pad_id: int, device: str):
    """Prompt-only batch, left-padded for generation."""
    import torch

    prompts = [f["input_ids"][: f["prompt_len"]] for f in feats]
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    return ids.to(device), mask.to(device)
