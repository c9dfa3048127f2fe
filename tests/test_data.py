"""The data layer: built-in datasets, local files, the hub path (monkeypatched), subsampling, fingerprints."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from sweep.data import DataError, Records, check_data_files, load_records
from sweep.data import builtin

DEFAULTS = dict(task="classification", source="builtin", name="intent", train_file=None, eval_file=None,
                train_split="train", eval_split="validation", text_field="text", label_field="label",
                instruction_field="instruction", input_field="input", output_field="output",
                train_size=None, eval_size=None, seed=42)
INTENT_LABELS = ["billing", "cancel", "delivery", "refund", "technical", "upgrade"]


def load(**overrides) -> Records:
    return load_records(**{**DEFAULTS, **overrides})


def local(path, **overrides) -> Records:
    return load(source="local", name=None, train_file=str(path), **overrides)


def one_line_error(match: str, **overrides) -> DataError:
    with pytest.raises(DataError, match=match) as info:
        load(**overrides)
    assert "\n" not in str(info.value)
    return info.value


# ---------------------------------------------------------------- built-in datasets

def test_builtin_intent_sizes_and_labels():
    rec = load()
    assert (rec.task, len(rec.train), len(rec.eval)) == ("classification", 4000, 1000)
    assert rec.label_names == INTENT_LABELS
    assert {r["label"] for r in rec.train} == set(range(6)) == {r["label"] for r in rec.eval}
    assert all(set(r) == {"text", "label"} and isinstance(r["label"], int) for r in rec.train + rec.eval)
    assert re.fullmatch(r"[0-9a-f]{16}", rec.fingerprint), rec.fingerprint


def test_builtin_instruct_sizes_and_short_answers():
    rec = load(task="instruction", name="instruct")
    assert (rec.task, len(rec.train), len(rec.eval), rec.label_names) == ("instruction", 2000, 300, None)
    assert all(set(r) == {"instruction", "input", "output"} for r in rec.train + rec.eval)
    assert all(len(r["output"].split()) == 1 and len(r["output"]) <= 10 for r in rec.train + rec.eval)
    assert {r["instruction"] for r in rec.eval} <= {r["instruction"] for r in rec.train}


def test_builtin_instruct_llm_kinds_and_quotas():
    from collections import Counter

    from sweep.data.builtin_llm import LLM_QUOTAS, kind_of

    rec = load(task="instruction", name="instruct_llm")
    assert (len(rec.train), len(rec.eval)) == (588, 160)
    assert Counter(kind_of(r) for r in rec.train) == {k: n for k, (n, _) in LLM_QUOTAS.items()}
    assert Counter(kind_of(r) for r in rec.eval) == {k: 20 for k in LLM_QUOTAS}
    assert all(len(r["output"].split()) <= 2 and r["output"] for r in rec.train + rec.eval)


def test_instruct_llm_eval_items_are_never_seen_in_training():
    from sweep.data.builtin_llm import kind_of

    rec = load(task="instruction", name="instruct_llm")
    for kind in ("capital", "past_tense", "antonym", "category"):  # list-based: split by item, not by example
        train_words = {w for r in rec.train if kind_of(r) == kind for w in (r["input"], r["output"])}
        eval_inputs = [r["input"] for r in rec.eval if kind_of(r) == kind]
        assert not set(eval_inputs) & train_words, kind
    pairs = lambda rows: {(r["instruction"], r["input"]) for r in rows}  # noqa: E731
    assert not pairs(rec.train) & pairs(rec.eval)


@pytest.mark.parametrize("name,key", [("intent", "text"), ("instruct", "input"), ("instruct_llm", "input")])
def test_no_eval_example_in_train(name, key):
    train_file, eval_file = builtin.DATASETS[name][1:]
    train = builtin.BUILTIN_DIR / train_file
    eval = builtin.BUILTIN_DIR / eval_file
    as_keys = lambda p: [json.dumps({k: v for k, v in json.loads(line).items() if k != "label" and k != "output"},
                                    sort_keys=True) for line in p.read_text().splitlines()]
    train_keys, eval_keys = as_keys(train), as_keys(eval)
    assert len(set(train_keys)) == len(train_keys) and len(set(eval_keys)) == len(eval_keys)
    assert not set(train_keys) & set(eval_keys)


def test_regenerating_gives_the_shipped_files():
    generated = builtin.generate()
    assert sorted(generated) == sorted(f for spec in builtin.DATASETS.values() for f in spec[1:])
    for file_name, text in generated.items():
        assert (builtin.BUILTIN_DIR / file_name).read_bytes() == text.encode("utf-8"), file_name


def test_builtin_files_are_small():
    assert sum((builtin.BUILTIN_DIR / f).stat().st_size for f in builtin.generate()) < 2_000_000


def test_intent_label_noise_is_documented_rate():
    from sweep.data import builtin_intent

    rows = builtin_intent.intent_rows()
    noisy = sum(r["family"] == "noise" for r in rows) / len(rows)
    assert abs(noisy - builtin_intent.INTENT_NOISE) < 0.01


def test_unknown_builtin_name_lists_the_available_ones():
    err = one_line_error("data.name", name="sst2")
    assert "intent" in str(err) and "instruct" in str(err)


def test_builtin_task_mismatch_names_data_task():
    one_line_error(r"data\.task: .*set data\.task=classification or data\.name=instruct", task="instruction")


# ---------------------------------------------------------------- fingerprints and subsampling

def test_fingerprint_is_stable_and_pinned():
    # pinned: a change to the shipped data, its loading or the fingerprint itself must show up here
    assert load().fingerprint == "dcefc1f7c4273558"
    assert load(task="instruction", name="instruct").fingerprint == "456017461b9cefc7"
    assert load(eval_size=100).fingerprint == "1287c5573e698776"
    assert load().fingerprint != load(eval_size=100).fingerprint
    assert load(eval_size=100).fingerprint != load(eval_size=101).fingerprint
    assert load().fingerprint != load(task="instruction", name="instruct").fingerprint


def test_subsample_is_seeded_and_keeps_order():
    a, b, c = load(train_size=50, eval_size=20), load(train_size=50, eval_size=20), load(train_size=50, eval_size=20, seed=7)
    assert (a.train, a.eval, a.fingerprint) == (b.train, b.eval, b.fingerprint)
    assert a.train != c.train and a.fingerprint != c.fingerprint
    assert (len(a.train), len(a.eval)) == (50, 20)
    full = load().train
    positions = [full.index(r) for r in a.train]
    assert positions == sorted(positions)


def test_subsample_larger_than_data_keeps_all():
    assert len(load(train_size=10**6).train) == 4000


# ---------------------------------------------------------------- local files

ROWS = [{"text": f"message number {i}", "label": ["spam", "ham", "eggs"][i % 3]} for i in range(30)]


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_local_round_trip(tmp_path, suffix):
    df = pd.DataFrame(ROWS)
    train, eval = tmp_path / f"train{suffix}", tmp_path / f"eval{suffix}"
    for path, part in ((train, df.iloc[:24]), (eval, df.iloc[24:])):
        if suffix == ".csv":
            part.to_csv(path, index=False)
        elif suffix == ".parquet":
            part.to_parquet(path, index=False)
        else:
            part.to_json(path, orient="records", lines=True)
    rec = local(train, eval_file=str(eval))
    assert rec.label_names == ["eggs", "ham", "spam"]  # string labels -> ids in sorted order
    assert rec.train[0] == {"text": "message number 0", "label": 2}
    assert rec.train[1] == {"text": "message number 1", "label": 1}
    assert [r["text"] for r in rec.eval] == [f"message number {i}" for i in range(24, 30)]


def test_local_json_array(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps(ROWS[:10]))
    assert len(local(path).train) == 8


def test_local_formats_give_one_fingerprint(tmp_path):
    df = pd.DataFrame(ROWS)
    df.to_csv(tmp_path / "t.csv", index=False)
    df.to_parquet(tmp_path / "t.parquet", index=False)
    df.to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    prints = {local(tmp_path / f"t{s}").fingerprint for s in (".csv", ".parquet", ".jsonl")}
    assert len(prints) == 1


def test_local_holdout_is_seeded_20_percent(tmp_path):
    path = tmp_path / "train.jsonl"
    pd.DataFrame(ROWS).to_json(path, orient="records", lines=True)
    a, b, c = local(path), local(path), local(path, seed=1)
    assert (len(a.train), len(a.eval)) == (24, 6)
    assert (a.train, a.eval) == (b.train, b.eval) and a.eval != c.eval
    assert not {r["text"] for r in a.train} & {r["text"] for r in a.eval}


def test_local_integer_labels_and_renamed_columns(tmp_path):
    path = tmp_path / "train.csv"
    pd.DataFrame({"sentence": ["a b", "c d", "e f", "g h", "i j"], "y": [0, 2, 1, 2, 0]}).to_csv(path, index=False)
    rec = local(path, text_field="sentence", label_field="y")
    assert rec.label_names == ["0", "1", "2"]
    assert sorted(r["label"] for r in rec.train + rec.eval) == [0, 0, 1, 2, 2]


def test_local_instruction_records(tmp_path):
    path = tmp_path / "train.jsonl"
    rows = [{"q": f"Add {i} and 1.", "ctx": None, "a": str(i + 1)} for i in range(10)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rec = local(path, task="instruction", instruction_field="q", input_field="ctx", output_field="a")
    assert rec.label_names is None
    assert {"instruction": "Add 0 and 1.", "input": "", "output": "1"} in rec.train + rec.eval


def test_missing_file_error_names_key_and_fix(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(DataError) as info:
        local(missing)
    assert str(info.value) == (f"data.train_file: file not found: {missing} "
                               "(set data.train_file to an existing .jsonl/.csv/.parquet file)")


def test_bad_extension_error(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("hello\n")
    one_line_error(r"^data\.train_file: unknown extension '\.txt'", source="local", train_file=str(path))


def test_missing_column_error(tmp_path):
    path = tmp_path / "train.csv"
    pd.DataFrame(ROWS).to_csv(path, index=False)
    one_line_error(r"^data\.text_field: column 'sentence' not in \['text', 'label'\]",
                   source="local", train_file=str(path), text_field="sentence")


def test_empty_file_error(tmp_path):
    for name in ("train.jsonl", "train.csv"):
        (tmp_path / name).write_text("")
        one_line_error(r"^data\.train_file: no records in", source="local", train_file=str(tmp_path / name))


def test_invalid_json_line_error(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "a", "label": 0}\n{oops\n')
    one_line_error(r"^data\.train_file: line 2 of .* is not valid JSON", source="local", train_file=str(path))


def test_eval_label_unseen_in_train_error(tmp_path):
    train, eval = tmp_path / "train.jsonl", tmp_path / "eval.jsonl"
    pd.DataFrame(ROWS[:6]).to_json(train, orient="records", lines=True)
    pd.DataFrame([{"text": "x", "label": "toast"}]).to_json(eval, orient="records", lines=True)
    one_line_error(r"^data\.label_field: eval labels \['toast'\]", source="local", train_file=str(train),
                   eval_file=str(eval))


def _jsonl(path, labels, prefix="t"):
    path.write_text("".join(json.dumps({"text": f"{prefix} {i}", "label": y}) + "\n" for i, y in enumerate(labels)))
    return path


@pytest.mark.parametrize("labels", [["a"] * 10, [3] * 10], ids=["string", "integer"])
def test_one_label_is_an_error(tmp_path, labels):
    path = _jsonl(tmp_path / "train.jsonl", labels)
    err = one_line_error(r"^data\.label_field: all 10 train records of .* have label", source="local", train_file=str(path))
    assert str(path) in str(err) and "at least two labels" in str(err) and "data.label_field names the label column" in str(err)


def test_one_label_left_after_the_subsample_is_an_error(tmp_path):
    path = _jsonl(tmp_path / "train.jsonl", ["a"] * 30 + ["b"])
    eval = _jsonl(tmp_path / "eval.jsonl", ["a", "a"], "e")
    one_line_error(r"^data\.label_field: after the data\.train_size=3 subsample only label 'a' is left .*raise data\.train_size",
                   source="local", train_file=str(path), eval_file=str(eval), train_size=3)


def test_eval_label_with_one_train_example_is_a_warning(tmp_path):
    from sweep.data import label_warnings

    train = _jsonl(tmp_path / "train.jsonl", ["a", "a", "a", "b", "c", "c"])
    eval = _jsonl(tmp_path / "eval.jsonl", ["a", "b", "c"], "e")
    rec = local(train, eval_file=str(eval))
    (line,) = label_warnings(rec, str(train))
    assert line.startswith("data.label_field: eval label ['b'] of ") and "has a single train example" in line
    rec = local(_jsonl(tmp_path / "ok.jsonl", ["a", "a", "b", "b"]), eval_file=str(_jsonl(tmp_path / "e2.jsonl", ["a", "b"])))
    assert label_warnings(rec, "x") == []


def test_eval_label_left_without_train_examples_by_the_holdout_is_a_warning(tmp_path):
    from sweep.data import label_warnings

    path = tmp_path / "train.csv"  # seed 42 holds out the third record, the only label 1
    pd.DataFrame({"text": ["a b", "c d", "e f", "g h", "i j"], "label": [0, 2, 1, 2, 0]}).to_csv(path, index=False)
    rec = local(path)
    assert [r["label"] for r in rec.eval] == [1]
    (line,) = label_warnings(rec, str(path))
    assert line.startswith("data.label_field: eval label ['1'] of ") and "no train example left" in line
    assert "data.eval_file" in line


def test_missing_label_value_error(tmp_path):
    path = tmp_path / "train.csv"
    pd.DataFrame({"text": ["a", "b", "c"], "label": ["x", None, "y"]}).to_csv(path, index=False)
    one_line_error(r"^data\.label_field: record 2 of", source="local", train_file=str(path))


def test_check_data_files_reads_nothing(tmp_path):
    good = tmp_path / "train.parquet"
    good.write_bytes(b"not really parquet")  # only existence and extension are checked
    assert check_data_files(source="local", train_file=str(good), eval_file=None) == []
    assert check_data_files(source="builtin", train_file=None, eval_file=None) == []
    problems = check_data_files(source="local", train_file=str(tmp_path / "a.txt"), eval_file=str(tmp_path / "b.csv"))
    assert [p.split(":")[0] for p in problems] == ["data.train_file", "data.train_file", "data.eval_file"]
    assert check_data_files(source="local", train_file=None, eval_file=None)[0].startswith("data.train_file: required")


# ---------------------------------------------------------------- hub (monkeypatched: no network here)

def test_hub_failure_is_one_line_naming_data_name(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'stanfordnlp/sst2' on the Hub\n(LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    err = one_line_error(r"^data\.name: cannot load hub dataset 'stanfordnlp/sst2'.*data\.source=local",
                         source="hub", name="stanfordnlp/sst2", text_field="sentence")
    assert "unreachable" in str(err)


def test_hub_rows_are_mapped_with_class_names(monkeypatch):
    import datasets

    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    splits = {
        "train": datasets.Dataset.from_dict({"sentence": ["bad", "good", "fine"], "label": [0, 1, 1]}, features=features),
        "validation": datasets.Dataset.from_dict({"sentence": ["meh"], "label": [0]}, features=features),
    }
    calls = []

    def fake(name, split):
        calls.append((name, split))
        return splits[split]

    monkeypatch.setattr(datasets, "load_dataset", fake)
    rec = load(source="hub", name="stanfordnlp/sst2", text_field="sentence")
    assert calls == [("stanfordnlp/sst2", "train"), ("stanfordnlp/sst2", "validation")]
    assert rec.label_names == ["negative", "positive"]
    assert rec.train == [{"text": "bad", "label": 0}, {"text": "good", "label": 1}, {"text": "fine", "label": 1}]
    assert rec.eval == [{"text": "meh", "label": 0}]


def test_data_package_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys; from sweep.data import load_records; "
            "load_records(**%r); print('torch' in sys.modules)" % (DEFAULTS,))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
