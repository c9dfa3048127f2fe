"""Tokenisation and batching for the two tasks.

Classification: `text` -> input ids, `label` -> class id.
Instruction tuning: the tokenizer's chat template (one user turn, instruction and
input on two lines, then the assistant header) or a fixed plain template; the loss
covers only the answer and its end token (prompt positions are labelled -100), and
generation starts from the same prompt.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field

from sweep.config.errors import ConfigError

PROMPT_TEMPLATE = "instruction: {instruction} input: {input} answer:"
_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def resolve_prompt_format(requested: str, tok) -> str:
    """`chat` or `plain`: auto picks chat when the tokenizer carries a chat template."""
    has_template = bool(getattr(tok, "chat_template", None))
    if requested == "chat" and not has_template:
        raise ConfigError(["data.prompt_format: chat needs a tokenizer with a chat template, this one has none "
                           "(use data.prompt_format=plain or auto)"])
    if requested == "auto":
        return "chat" if has_template else "plain"
    return requested


def user_message(rec: dict) -> str:
    """The user turn of the chat format: the instruction, then the input on its own line."""
    inp = rec.get("input") or ""
    return f"{rec['instruction']}\n{inp}" if inp else rec["instruction"]


def prompt_text(rec: dict, tok=None, fmt: str = "plain") -> str:
    if fmt == "chat":
        return tok.apply_chat_template([{"role": "user", "content": user_message(rec)}], add_generation_prompt=True,
                                       tokenize=False)
    return PROMPT_TEMPLATE.format(instruction=rec["instruction"], input=rec.get("input", ""))


def normalise_answer(text: str) -> str:
    """SQuAD-style normalisation for exact match: lower case, no punctuation, no articles, single spaces."""
    text = _PUNCTUATION.sub(" ", text.lower())
    return " ".join(_ARTICLES.sub(" ", text).split())


def encode_classification(records: list[dict], tok, max_len: int) -> list[dict]:
    enc = tok([r["text"] for r in records], truncation=True, max_length=max_len)
    return [{"input_ids": ids, "labels": int(r["label"])} for ids, r in zip(enc["input_ids"], records)]


def encode_instruction(records: list[dict], tok, max_len: int, eos_id: int, fmt: str = "plain") -> list[dict]:
    """Prompt + answer + eos token ids; labels -100 on the prompt. `fmt` is a resolved format (chat | plain)."""
    out = []
    lead = "" if fmt == "chat" else " "  # the chat template ends on a newline; the plain one on "answer:"
    for r in records:
        p = tok(prompt_text(r, tok, fmt), add_special_tokens=False)["input_ids"]
        a = tok(lead + r["output"], add_special_tokens=False)["input_ids"] + [eos_id]
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
