"""The second built-in classification task, `review` (the department of the reviewed product): shape, labels, no
leakage, documented noise, byte-identical regeneration."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from sweep.data import builtin, load_records
from sweep.data import builtin_review as br

ARGS = dict(task="classification", source="builtin", name="review", train_file=None, eval_file=None,
            train_split="train", eval_split="validation", text_field="text", label_field="label",
            instruction_field="instruction", input_field="input", output_field="output",
            train_size=None, eval_size=None, seed=42)


def test_review_sizes_and_labels():
    rec = load_records(**ARGS)
    assert (rec.task, len(rec.train), len(rec.eval)) == ("classification", br.REVIEW_TRAIN, br.REVIEW_EVAL)
    assert rec.label_names == br.REVIEW_LABELS == ["clothing", "electronics", "kitchen", "outdoor"]
    assert {r["label"] for r in rec.train} == {0, 1, 2, 3} == {r["label"] for r in rec.eval}
    assert builtin.DATASETS["review"] == ("classification", "review_train.jsonl", "review_eval.jsonl")


def test_review_has_no_eval_text_in_train_and_shares_none_with_intent():
    texts = lambda f: [json.loads(line)["text"] for line in (builtin.BUILTIN_DIR / f).read_text().splitlines()]
    train, eval = texts("review_train.jsonl"), texts("review_eval.jsonl")
    assert len(set(train)) == len(train) and len(set(eval)) == len(eval) and not set(train) & set(eval)
    assert not (set(train) | set(eval)) & set(texts("intent_train.jsonl") + texts("intent_eval.jsonl"))


def test_review_families_and_documented_noise():
    rows = br.review_rows()
    families = {r["family"] for r in rows}
    assert families == set(br._FAMILIES) | {"noise"}
    assert abs(sum(r["family"] == "noise" for r in rows) / len(rows) - br.REVIEW_NOISE) < 0.01
    assert all(len(r["text"].split()) <= br.REVIEW_MAX_PIECES for r in rows)
    shares = {f: sum(r["family"] == f for r in rows) / len(rows) for f in br._FAMILIES}  # duplicates are redrawn, so
    # families with few distinct texts (single: 18.7% instead of 19.2%) end up slightly below their nominal share
    assert all(abs(shares[f] - 0.96 * w) < 0.01 for f, (w, _) in br._FAMILIES.items()), shares


def test_review_regenerates_byte_identically_under_any_hash_seed():
    code = "from sweep.data.builtin_review import review_records as r; import hashlib, json; " \
           "print(hashlib.sha256(json.dumps(r()).encode()).hexdigest())"
    digests = {subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True,
                              text=True, check=True).stdout.strip() for seed in ("0", "4242")}
    assert len(digests) == 1
    generated = builtin.generate()  # the shipped files, as test_data.py checks for every dataset
    for f in ("review_train.jsonl", "review_eval.jsonl"):
        assert (builtin.BUILTIN_DIR / f).read_bytes() == generated[f].encode("utf-8")
