"""Loading records from the three sources: the shipped built-in files, local files, the Hugging Face hub.

Every source yields raw rows (dicts); one path maps the configured fields to the
record shape, maps string labels to ids, holds out an eval split when none is
given, subsamples, and fingerprints. pandas/pyarrow read CSV and Parquet; no torch.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

from sweep.data.records import TASKS, DataError, Records, fingerprint

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
HOLDOUT_FRACTION = 0.2  # local data without an eval file: this share of train becomes eval
_FORMATS = "a .jsonl/.csv/.parquet file"


# ---------------------------------------------------------------- cheap checks (no data read)

def _abs(path: str) -> Path:
    return Path(path).expanduser().resolve()


def _file_problems(key: str, name: str) -> list[str]:
    path = _abs(name)
    problems = []
    if path.suffix.lower() not in SUFFIXES:
        problems.append(f"{key}: unknown extension {path.suffix or '(none)'!r} of {path} "
                        f"(use one of {', '.join(SUFFIXES)})")
    if not path.is_file():
        problems.append(f"{key}: file not found: {path} (set {key} to an existing .jsonl/.csv/.parquet file)")
    return problems


def check_data_files(*, source: str, train_file: str | None, eval_file: str | None) -> list[str]:
    """One error line per missing file or unknown extension; reads no data. Empty unless source is local."""
    if source != "local":
        return []
    if not train_file:
        problems = [f"data.train_file: required when data.source=local (set data.train_file to {_FORMATS})"]
    else:
        problems = _file_problems("data.train_file", train_file)
    return problems + (_file_problems("data.eval_file", eval_file) if eval_file else [])


# ---------------------------------------------------------------- raw rows per source

def _plain(value):
    """numpy/pandas scalars -> Python values; NaN, NA and NaT -> None."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, float) and math.isnan(value):
        return None
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    return value


def _read_json_lines(path: Path, key: str) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):  # a .json file holding one array of objects
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{key}: {path} is not valid JSON ({e.msg} at line {e.lineno}; "
                            f"write one JSON object per line)") from None
    else:
        rows = []
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise DataError(f"{key}: line {n} of {path} is not valid JSON "
                                    f"({e.msg}; write one JSON object per line)") from None
    for n, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise DataError(f"{key}: record {n} of {path} is a {type(row).__name__}, not an object "
                            f"(write one JSON object per line)")
    return rows


def _read_table(path: Path, key: str) -> list[dict]:
    import pandas as pd

    try:
        if path.suffix.lower() == ".csv":
            # keep strings such as "NA" or "None" as text; only empty cells are missing
            df = pd.read_csv(path, keep_default_na=False, na_values=[""])
        else:
            df = pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        return []
    except Exception as e:  # noqa: BLE001 - any reader failure becomes one config-level line
        raise DataError(f"{key}: cannot read {path} ({type(e).__name__}: {e}; "
                        f"check the file is a valid {path.suffix[1:]} file)") from None
    return [{str(k): _plain(v) for k, v in row.items()} for row in df.to_dict(orient="records")]


def read_file(name: str, key: str) -> tuple[list[dict], str]:
    """Rows of a local file, and a description of where they came from."""
    if not name:
        raise DataError(f"{key}: required when data.source=local (set {key} to {_FORMATS})")
    problems = _file_problems(key, name)
    if problems:
        raise DataError(problems[0])
    path = _abs(name)
    rows = _read_json_lines(path, key) if path.suffix.lower() in (".jsonl", ".json") else _read_table(path, key)
    if not rows:
        raise DataError(f"{key}: no records in {path} (the file is empty; set {key} to a file with data)")
    return rows, str(path)


def _builtin_rows(task: str, name: str | None) -> tuple[list[dict], list[dict], str]:
    from sweep.data import builtin  # imported here so that `python -m sweep.data.builtin` runs it fresh

    if name not in builtin.DATASETS:
        raise DataError(f"data.name: unknown built-in dataset {name!r} (use one of {', '.join(builtin.DATASETS)})")
    kind, train_file, eval_file = builtin.DATASETS[name]
    if kind != task:
        other = next(n for n, spec in builtin.DATASETS.items() if spec[0] == task)
        raise DataError(f"data.task: built-in dataset {name!r} is a {kind} task, got data.task={task} "
                        f"(set data.task={kind} or data.name={other})")
    train = _read_json_lines(builtin.BUILTIN_DIR / train_file, "data.name")
    eval = _read_json_lines(builtin.BUILTIN_DIR / eval_file, "data.name")
    return train, eval, f"built-in dataset {name!r}"


def _hub_rows(name: str, split: str, key: str) -> tuple[list[dict], dict[str, list[str]]]:
    """Rows of one hub split, and the class names of its ClassLabel columns."""
    try:
        import datasets

        ds = datasets.load_dataset(name, split=split)
    except Exception as e:  # noqa: BLE001 - offline, unknown id, unknown split: all one config-level line
        raise DataError(f"{key}: cannot load hub dataset {name!r} split {split!r} ({type(e).__name__}: {e}) "
                        f"(the hub is unreachable offline or the id/split is wrong: use data.source=local with "
                        f"data.train_file, or check data.name and data.train_split/data.eval_split)") from None
    names: dict[str, list[str]] = {}
    for column, feature in getattr(ds, "features", {}).items():
        if hasattr(feature, "names"):
            names[column] = list(feature.names)
    return [dict(r) for r in ds], names


# ---------------------------------------------------------------- rows -> records

def _column(rows: list[dict], key: str, field: str, where: str) -> list:
    columns = list(rows[0].keys())
    if field not in columns:
        raise DataError(f"{key}: column {field!r} not in {columns} of {where} (set {key} to one of those columns)")
    values = []
    for n, row in enumerate(rows, start=1):
        if field not in row:
            raise DataError(f"{key}: record {n} of {where} has no column {field!r} (give every record the column)")
        values.append(_plain(row[field]))
    return values


def _texts(values: list, key: str, where: str, *, missing_ok: bool = False) -> list[str]:
    out = []
    for n, v in enumerate(values, start=1):
        if v is None:
            if not missing_ok:
                raise DataError(f"{key}: record {n} of {where} has no value (fill it in or drop the record)")
            v = ""
        out.append(str(v))
    return out


def _instruction_records(rows: list[dict], where: str, *, fields: dict[str, str]) -> list[dict]:
    cols = {k: _column(rows, f"data.{k}_field", f, where) for k, f in fields.items()}
    instr = _texts(cols["instruction"], "data.instruction_field", where)
    inp = _texts(cols["input"], "data.input_field", where, missing_ok=True)
    out = _texts(cols["output"], "data.output_field", where)
    return [{"instruction": a, "input": b, "output": c} for a, b, c in zip(instr, inp, out)]


def _raw_labels(rows: list[dict], field: str, where: str) -> list:
    labels = []
    for n, v in enumerate(_column(rows, "data.label_field", field, where), start=1):
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool):
            v = str(v)
        if v is None or not isinstance(v, (int, str)):
            raise DataError(f"data.label_field: record {n} of {where} has label {v!r} "
                            f"(labels must be integers or strings; fill in or drop the record)")
        labels.append(v)
    return labels


def _label_names(train: list, eval: list, where: str, known: list[str] | None) -> tuple[list[str], dict]:
    """(names indexed by id, raw label -> id) from the train labels; eval labels must be among them.

    Integer labels are ids already (names: the dataset's class names, else "0".."max");
    string labels get ids in the sorted order of the names seen in train.
    """
    kinds = {type(v) for v in train} | {type(v) for v in eval}
    if len(kinds) > 1:
        raise DataError(f"data.label_field: {where} mixes integer and string labels (use one kind for every record)")
    if kinds == {int}:
        if min(train + eval) < 0:
            raise DataError(f"data.label_field: negative label {min(train + eval)} in {where} "
                            f"(integer labels are ids 0..n-1)")
        names = list(known) if known else [str(i) for i in range(max(train) + 1)]
        beyond = [v for v in train if v >= len(names)]
        if beyond:
            raise DataError(f"data.label_field: label {max(beyond)} in {where} is beyond its {len(names)} class names "
                            f"(check data.label_field)")
        mapping = {i: i for i in range(len(names))}
    else:
        names = sorted(dict.fromkeys(train))
        mapping = {name: i for i, name in enumerate(names)}
    distinct = sorted(dict.fromkeys(train), key=str)
    if len(distinct) < 2:
        raise DataError(f"data.label_field: all {len(train)} train records of {where} have label {distinct[0]!r} "
                        f"(a classification task needs at least two labels: add records of another label to "
                        f"{where}, or check that data.label_field names the label column)")
    unseen = sorted(dict.fromkeys(v for v in eval if v not in mapping), key=str)
    if unseen:
        raise DataError(f"data.label_field: eval labels {unseen[:5]} never occur in the train data of {where} "
                        f"(known: {names[:10]}; give the train data every label or drop those eval records)")
    return names, mapping


def _classification_records(rows: list[dict], where: str, text_field: str,
                            label_field: str) -> tuple[list[str], list]:
    texts = _texts(_column(rows, "data.text_field", text_field, where), "data.text_field", where)
    return texts, _raw_labels(rows, label_field, where)


# ---------------------------------------------------------------- holdout, subsample

def _rng(seed: int, salt: str) -> random.Random:
    return random.Random(f"lorasweep:{salt}:{seed}")  # str seeds hash with sha512: stable across runs


def subsample(records: list[dict], size: int | None, seed: int, salt: str) -> list[dict]:
    """`size` records chosen with `seed`, in their original order; all when size is None or too large."""
    if size is None or size >= len(records):
        return list(records)
    keep = sorted(_rng(seed, salt).sample(range(len(records)), size))
    return [records[i] for i in keep]


def holdout(records: list[dict], seed: int) -> tuple[list[dict], list[dict]]:
    """(train, eval): a seeded HOLDOUT_FRACTION of records becomes eval, both in original order."""
    n_eval = max(1, round(HOLDOUT_FRACTION * len(records)))
    picked = set(_rng(seed, "holdout").sample(range(len(records)), n_eval))
    return ([r for i, r in enumerate(records) if i not in picked], [r for i, r in enumerate(records) if i in picked])


# ---------------------------------------------------------------- labels after the split

def _check_split_labels(before: list[dict], train: list[dict], names: list[str], where: str, *, held_out: bool,
                        train_size: int | None) -> None:
    """Train keeps at least two labels once the eval split is held out (`before`: train after that) and train is
    subsampled. (An eval label left without train records is a warning: `label_warnings`.)"""
    seen = {r["label"] for r in train}
    if len(seen) < 2:
        if held_out and len({r["label"] for r in before}) < 2:
            what, fix = "holding out the eval split", "set data.eval_file, or add train records of other labels"
        else:
            what, fix = f"the data.train_size={train_size} subsample", "raise data.train_size"
        raise DataError(f"data.label_field: after {what} only label {names[min(seen)]!r} is left in the train records "
                        f"of {where} (a classification task needs at least two labels; {fix})")


def label_warnings(records: Records, where: str) -> list[str]:
    """A line each for the eval labels without a train example once the eval split is held out and train is
    subsampled, and for those with a single one (their accuracy rests on one record)."""
    if records.task != "classification" or not records.label_names:
        return []
    counts: dict[int, int] = {}
    for r in records.train:
        counts[r["label"]] = counts.get(r["label"], 0) + 1
    out = []
    for n, text in ((0, "no train example left after the held-out eval split or the data.train_size subsample "
                        "(the model cannot learn {it}: set data.eval_file or raise data.train_size)"),
                    (1, "a single train example (the model barely sees {it}: add train records, or read {its} "
                        "accuracy with care)")):
        labels = sorted({r["label"] for r in records.eval if counts.get(r["label"], 0) == n})
        if not labels:
            continue
        shown = [records.label_names[i] for i in labels]
        many = len(shown) > 1
        out.append(f"data.label_field: eval label{'s' if many else ''} {shown[:5]}{' ...' if len(shown) > 5 else ''} "
                   f"of {where} {'have' if many else 'has'} "
                   + text.format(it="them" if many else "it", its="their" if many else "its"))
    return out


# ---------------------------------------------------------------- the one entry point

def load_records(*, task: str, source: str, name: str | None, train_file: str | None, eval_file: str | None,
                 train_split: str, eval_split: str, text_field: str, label_field: str,
                 instruction_field: str, input_field: str, output_field: str,
                 train_size: int | None, eval_size: int | None, seed: int) -> Records:
    """Load, map fields, map labels, hold out / subsample (seeded) and fingerprint one dataset."""
    if task not in TASKS:
        raise DataError(f"data.task: must be one of {', '.join(TASKS)}; got {task!r}")
    known: dict[str, list[str]] = {}
    if source == "builtin":
        train_rows, eval_rows, where = _builtin_rows(task, name)
        train_where = eval_where = where
    elif source == "local":
        train_rows, train_where = read_file(train_file, "data.train_file")
        eval_rows, eval_where = read_file(eval_file, "data.eval_file") if eval_file else (None, train_where)
    elif source == "hub":
        if not name:
            raise DataError("data.name: required when data.source=hub (set data.name to a hub dataset id)")
        train_rows, known = _hub_rows(name, train_split, "data.name")
        eval_rows, _ = _hub_rows(name, eval_split, "data.eval_split")
        train_where = f"hub dataset {name!r} split {train_split!r}"
        eval_where = f"hub dataset {name!r} split {eval_split!r}"
        if not train_rows:
            raise DataError(f"data.train_split: {train_where} is empty (set data.train_split to a split with data)")
        if not eval_rows:
            raise DataError(f"data.eval_split: {eval_where} is empty (set data.eval_split to a split with data)")
    else:
        raise DataError(f"data.source: must be one of builtin, local, hub; got {source!r}")

    label_names = None
    if task == "classification":
        train_texts, train_raw = _classification_records(train_rows, train_where, text_field, label_field)
        eval_texts, eval_raw = (_classification_records(eval_rows, eval_where, text_field, label_field)
                                if eval_rows is not None else ([], []))
        label_names, mapping = _label_names(train_raw, eval_raw, train_where, known.get(label_field))
        train = [{"text": t, "label": mapping[y]} for t, y in zip(train_texts, train_raw)]
        eval = ([{"text": t, "label": mapping[y]} for t, y in zip(eval_texts, eval_raw)]
                if eval_rows is not None else None)
    else:
        fields = {"instruction": instruction_field, "input": input_field, "output": output_field}
        train = _instruction_records(train_rows, train_where, fields=fields)
        eval = _instruction_records(eval_rows, eval_where, fields=fields) if eval_rows is not None else None

    held_out = eval is None
    if eval is None:
        if len(train) < 2:
            raise DataError(f"data.eval_file: {train_where} has {len(train)} record, too few to hold out an eval split "
                            f"(set data.eval_file or add records)")
        train, eval = holdout(train, seed)
    before = train
    train = subsample(train, train_size, seed, "train")
    eval = subsample(eval, eval_size, seed, "eval")
    if task == "classification":
        _check_split_labels(before, train, label_names, train_where, held_out=held_out, train_size=train_size)
    return Records(task=task, train=train, eval=eval, label_names=label_names,
                   fingerprint=fingerprint(task, label_names, train, eval))
