"""Batching through transformers' collators: exactly the right-padded batches the trial expects."""

from __future__ import annotations

import torch

from sweep.models.loader import load_tokenizer
from sweep.train.encode import Collator


def _tok(compose_trial):
    return load_tokenizer(compose_trial("model=tiny_bert").model)


def test_classification_batch_is_right_padded_with_labels(compose_trial):
    tok = _tok(compose_trial)
    pad = tok.pad_token_id
    c = Collator(tok, causal=False)
    batch = c([{"input_ids": [101, 7, 102], "labels": 2}, {"input_ids": [101, 102], "labels": 0, "prompt_len": 1}])
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].tolist() == [[101, 7, 102], [101, 102, pad]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [2, 0] and batch["labels"].dtype == torch.long
    assert (c.tokens_seen, c.samples_seen) == (5, 2)


def test_causal_batch_pads_labels_with_minus_100_and_counting_can_be_off(compose_trial):
    tok = _tok(compose_trial)
    pad = tok.pad_token_id
    c = Collator(tok, causal=True, counting=False)
    batch = c([{"input_ids": [5, 6, 7, 8], "labels": [-100, -100, 7, 8], "prompt_len": 2},
               {"input_ids": [5, 9], "labels": [-100, 9], "prompt_len": 1}])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8], [5, 9, pad, pad]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, -100, 7, 8], [-100, 9, -100, -100]]
    assert (c.tokens_seen, c.samples_seen) == (0, 0)
