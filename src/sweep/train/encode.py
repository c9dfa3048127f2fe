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


class Collator:
    """Right-pads encoded examples with transformers' own collators (labels padded with -100 for causal LMs)
    and counts the real tokens and examples it has batched (the training throughput)."""

    MODEL_KEYS = ("input_ids", "labels")

    def __init__(self, tok, *, causal: bool, counting: bool = True):
        from transformers import DataCollatorForSeq2Seq, DataCollatorWithPadding

        tok.padding_side = "right"  # generation builds its own left-padded prompts (left_padded_prompts)
        self.inner = (DataCollatorForSeq2Seq(tok, label_pad_token_id=-100, return_tensors="pt") if causal
                      else DataCollatorWithPadding(tok, return_tensors="pt"))
        self.counting = counting
        self.tokens_seen = 0
        self.samples_seen = 0

    def __call__(self, feats: list[dict]):
        batch = dict(self.inner([{k: f[k] for k in self.MODEL_KEYS} for f in feats]))
        if self.counting:
            self.tokens_seen += int(batch["attention_mask"].sum())
            self.samples_seen += len(feats)
        return batch


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
