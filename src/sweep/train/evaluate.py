"""Evaluation: argmax accuracy for classification, exact match of greedy answers for instruction tuning."""

from __future__ import annotations

import time

from sweep.train.encode import Collator, left_padded_prompts, normalise_answer


def _batches(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def evaluate(model, eval_feats: list[dict], *, task: str, tok, answers: list[str] | None, batch_size: int,
             device: str, max_new_tokens: int, eos_id: int, predictions: list[str] | None = None) -> dict[str, float]:
    """eval_accuracy, eval_loss and eval_samples on the whole eval split (model left in train mode if it was).
    Instruction tasks: the generated answers are appended to `predictions` when a list is given."""
    import torch
    import torch.nn.functional as F

    was_training = model.training
    model.eval()
    collate = Collator(tok, causal=task != "classification", counting=False)
    sums: list[float] = []  # per example: summed loss and counted tokens (the interval of the token-weighted mean)
    counts: list[int] = []
    correct = 0
    with torch.no_grad():
        for chunk in _batches(eval_feats, batch_size):
            batch = {k: v.to(device) for k, v in collate(chunk).items()}
            labels = batch.pop("labels")
            logits = model(**batch).logits.float()
            if task == "classification":
                sums += F.cross_entropy(logits, labels, reduction="none").tolist()
                counts += [1] * len(chunk)
                correct += int((logits.argmax(-1) == labels).sum())
            else:
                shift_logits, shift_labels = logits[:, :-1], labels[:, 1:]
                mask = shift_labels != -100
                per_token = F.cross_entropy(shift_logits.transpose(1, 2), shift_labels.clamp(min=0), reduction="none")
                sums += (per_token * mask).sum(dim=1).tolist()
                counts += mask.sum(dim=1).tolist()
        if task != "classification":
            assert answers is not None
            for start, chunk in zip(range(0, len(eval_feats), batch_size), _batches(eval_feats, batch_size)):
                texts = generate(model, chunk, tok=tok, device=device, max_new_tokens=max_new_tokens, eos_id=eos_id)[0]
                if predictions is not None:
                    predictions.extend(texts)
                for j, text in enumerate(texts):
                    correct += int(normalise_answer(text) == normalise_answer(answers[start + j]))
    if was_training:
        model.train()
    n = len(eval_feats)
    loss, (lo, hi) = _mean_loss(sums, counts)
    return {"eval_accuracy": correct / n, "eval_loss": loss, "eval_loss_ci_low": lo, "eval_loss_ci_high": hi,
            "eval_samples": float(n)}


def _mean_loss(sums: list[float], counts: list[int]) -> tuple[float, tuple[float, float]]:
    """The token-weighted mean loss and its ~95% interval (delta method for a ratio of per-example sums)."""
    import math

    from sweep.noise import mean_interval

    total, tokens = sum(sums), sum(counts)
    mean = total / max(tokens, 1)
    n = len(sums)
    if n < 2 or tokens == 0:
        return mean, (math.nan, math.nan)
    var = sum((s - mean * c) ** 2 for s, c in zip(sums, counts)) / (n - 1)
    se = math.sqrt(var * n) / tokens
    return mean, mean_interval(mean, se)


def generate(model, feats: list[dict], *, tok, device: str, max_new_tokens: int, eos_id: int) -> tuple[list[str], int, float]:
    """Greedy answers for a batch of prompts: (texts, new tokens, seconds)."""
    import torch

    ids, mask = left_padded_prompts(feats, tok.pad_token_id, device)
    t0 = time.perf_counter()
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=eos_id, pad_token_id=tok.pad_token_id)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    new = out[:, ids.shape[1]:]
    texts, n_tokens = [], 0
    for row in new:
        toks = row.tolist()
        if eos_id in toks:
            toks = toks[: toks.index(eos_id)]
        toks = [t for t in toks if t != tok.pad_token_id]
        n_tokens += len(toks) + 1
        texts.append(tok.decode(toks, skip_special_tokens=True))
    return texts, n_tokens, seconds
