"""What a trial (or a study's baseline) needs before a model is built: data, tokenizer, encoded examples, the module
inventory and the run's self-description."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from sweep.config.hashing import config_hash
from sweep.config.schema import TrialConfig

EVAL_SUBSET_SEED = "lorasweep:eval-subset"  # the intermediate evaluations' subset is the same for every trial


@dataclass
class Prepared:
    task: str
    tok: Any
    eos: int
    num_labels: int | None
    inventory: Any  # models.targets.Inventory
    train_feats: list[dict]
    eval_feats: list[dict]
    answers: list[str] | None  # instruction tasks: the reference answers of eval_feats
    subset: list[int]  # positions of eval_feats used by intermediate evaluations
    meta: dict = field(default_factory=dict)

    def eval_part(self, positions: list[int] | None) -> tuple[list[dict], list[str] | None]:
        """(examples, answers) of the whole eval split, or of the given positions."""
        if positions is None:
            return self.eval_feats, self.answers
        feats = [self.eval_feats[i] for i in positions]
        return feats, ([self.answers[i] for i in positions] if self.answers is not None else None)


def subset_positions(n: int, size: int | None) -> list[int]:
    """A fixed, seeded choice of `size` of `n` eval examples (all of them when size is None or >= n), in order."""
    if size is None or size >= n:
        return list(range(n))
    return sorted(random.Random(EVAL_SUBSET_SEED).sample(range(n), size))


def prepare(cfg: TrialConfig, device: str, placement: dict[str, str] | None = None) -> Prepared:
    from sweep import provenance
    from sweep.data import load_records
    from sweep.models.loader import eos_token_id, inventory, load_tokenizer
    from sweep.train import encode

    t, d, m = cfg.train, cfg.data, cfg.model
    records = load_records(task=d.task, source=d.source, name=d.name, train_file=d.train_file, eval_file=d.eval_file,
                           train_split=d.train_split, eval_split=d.eval_split, text_field=d.text_field,
                           label_field=d.label_field, instruction_field=d.instruction_field, input_field=d.input_field,
                           output_field=d.output_field, train_size=d.train_size, eval_size=d.eval_size, seed=t.seed)
    num_labels = len(records.label_names) if records.label_names else None
    tok = load_tokenizer(m)
    eos = eos_token_id(tok)
    inv = inventory(m, d.task, num_labels)
    meta = {**provenance.describe(device), "config_hash": config_hash(cfg), "seed": t.seed,
            "model_fingerprint": provenance.model_fingerprint(m, t.seed), "data_fingerprint": records.fingerprint,
            "num_layers": inv.num_layers, "memory_kind": None, "placement": placement or {}}
    if d.task == "classification":
        train_feats = encode.encode_classification(records.train, tok, d.max_seq_len)
        eval_feats = encode.encode_classification(records.eval, tok, d.max_seq_len)
        answers = None
    else:
        fmt = meta["prompt_format"] = encode.resolve_prompt_format(d.prompt_format, tok)
        train_feats = encode.encode_instruction(records.train, tok, d.max_seq_len, eos, fmt)
        eval_feats = encode.encode_instruction(records.eval, tok, d.max_seq_len, eos, fmt)
        answers = [r["output"] for r in records.eval]
    return Prepared(d.task, tok, eos, num_labels, inv, train_feats, eval_feats, answers,
                    subset_positions(len(eval_feats), t.eval_subset), meta)
