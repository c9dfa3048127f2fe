"""A catalogue of bad inputs: each gives one line on stderr naming the key and the fix, exits non-zero, and writes
nothing to sweeps/ or .mlflow/ (the command runs in-process, in an empty folder)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sweep.__main__ import main

SMOKE = ["+experiment=smoke", "sweep.progress=plain"]
GOOD_ROWS = '{"text": "hello there", "label": "a"}\n{"text": "bye now", "label": "b"}\n{"text": "hi", "label": "a"}\n'


def _files(tmp: Path) -> dict[str, str]:
    """Data files the cases point at, written before each run."""
    (tmp / "empty.jsonl").write_text("")
    (tmp / "broken.jsonl").write_text('{"text": "fine", "label": "a"}\n{not json\n')
    (tmp / "good.jsonl").write_text(GOOD_ROWS)
    (tmp / "one_label.jsonl").write_text("".join(f'{{"text": "row {i}", "label": "a"}}\n' for i in range(8)))
    return {"empty": str(tmp / "empty.jsonl"), "broken": str(tmp / "broken.jsonl"), "good": str(tmp / "good.jsonl"),
            "one_label": str(tmp / "one_label.jsonl")}


# (case id, arguments, the key the line must name, a fragment of the fix it must give)
CASES = [
    ("override-syntax", ["lora.r=="], "override 'lora.r=='", "check the spelling"),
    ("unknown-option", ["lora=nonexistent"], "override 'lora=nonexistent'", "check the spelling"),
    ("unknown-group", ["nogroup=x"], "override 'nogroup=x'", "check the spelling"),
    ("unknown-key", ["lora.rank=4"], "override 'lora.rank=4'", "known keys of lora: adalora_delta_t"),
    ("rank-zero", ["lora.r=0"], "lora.r", "lora.r=8"),
    ("rank-negative", ["lora.r=-3"], "lora.r", "lora.r=8"),
    ("rank-not-a-number", ["lora.r=abc"], "lora.r", "expected an integer"),
    ("dropout-range", ["lora.dropout=1.5"], "lora.dropout", "[0, 1)"),
    ("alpha-both", ["lora.alpha_ratio=2"], "lora.alpha", "set the other to null"),
    ("lr-zero", ["train.lr=0"], "train.lr", "must be > 0"),
    ("precision", ["train.precision=fp8"], "train.precision", "one of fp32, bf16, fp16"),
    ("steps-and-epochs", ["train.max_steps=null"], "train.max_steps", "set exactly one"),
    ("quant-method", ["quant.method=nf3"], "quant.method", "one of none, nf4, fp4, int8"),
    ("double-quant-without-4bit", ["quant.double_quant=true"], "quant.double_quant", "set quant.double_quant=false"),
    ("objective", ["sweep.objectives=[accuracy]"], "sweep.objectives[0]", "eval_accuracy"),
    ("workers", ["sweep.workers=zero"], "sweep.workers", "auto or a positive integer"),
    ("sampler", ["sweep.sampler=bogus"], "sweep.sampler", "one of tpe, nsga2, random, grid"),
    ("n-trials", ["sweep.n_trials=0"], "sweep.n_trials", ">= 1"),
    ("target-preset", ["lora.targets=nope"], "lora.targets", "use one of qv"),
    ("target-module", ["lora.targets=[query,nonexistent]"], "lora.targets", "linear modules:"),
    ("local-model-path", ["model.source=local"], "model.path", "set model.path"),
    ("data-file-missing", ["data=local_jsonl", "data.train_file=/no/such/file.jsonl"], "data.train_file", "existing"),
    ("data-file-unset", ["data=local_jsonl"], "data.train_file", "set data.train_file"),
    ("data-file-empty", ["data=local_jsonl", "data.train_file={empty}"], "data.train_file", "a file with data"),
    ("data-file-malformed", ["data=local_jsonl", "data.train_file={broken}"], "data.train_file", "one JSON object per line"),
    ("text-column", ["data=local_jsonl", "data.train_file={good}", "data.text_field=sentence"], "data.text_field",
     "one of those columns"),
    ("label-column", ["data=local_jsonl", "data.train_file={good}", "data.label_field=category"], "data.label_field",
     "one of those columns"),
    ("one-label", ["data=local_jsonl", "data.train_file={one_label}"], "data.label_field", "at least two labels"),
    ("storage-scheme", ["sweep.storage=redis://127.0.0.1/0"], "sweep.storage", "postgresql://"),
    ("postgres-unreachable", ["sweep.storage=postgresql://nobody@127.0.0.1:9/none"], "sweep.storage", "start the database server"),
    ("mlflow-unwritable", ["tracking.tracking_uri=sqlite:////proc/lorasweep/mlflow.db"], "tracking.tracking_uri", "tracking=none"),
    ("pruner-without-evaluations", ["sweep.objectives=[eval_accuracy]", "sweep.pruner=median", "train.eval_every=0"],
     "sweep.pruner", "set train.eval_every"),
    ("pruner-several-objectives", ["sweep.pruner=median"], "sweep.pruner", "keep one objective"),
    ("config-dir-missing", ["--config-dir", "/no/such/folder"], "--config-dir", "give a folder"),
]


@pytest.mark.parametrize("case, args, key, fix", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_and_writes_nothing(case, args, key, fix, in_tmp, capsys):
    files = _files(in_tmp)
    argv = [*SMOKE, *(a.format(**files) for a in args)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"error: {key}"), err[0]
    assert fix in err[0], err[0]
    assert not (in_tmp / "sweeps").exists() and not (in_tmp / ".mlflow").exists()


def _study_db(root: Path) -> Path:
    db = root / "sweeps" / "smoke" / "study.db"
    db.parent.mkdir(parents=True)
    return db


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_corrupt_study_db(in_tmp, capsys):
    _study_db(in_tmp).write_bytes(b"not a database at all " * 100)
    before = _listing(in_tmp)
    assert main(SMOKE) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: sweep.storage:") and "not a usable sqlite database" in err[0]
    assert "move the file away" in err[0] and _listing(in_tmp) == before


def test_locked_study_db(in_tmp, capsys):
    db = _study_db(in_tmp)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("create table t (x int)")
    holder.execute("begin exclusive")
    try:
        before = _listing(in_tmp)
        assert main([*SMOKE, "sweep.storage_timeout_s=0.5"]) == 2
    finally:
        holder.execute("rollback")
        holder.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: sweep.storage:") and "locked" in err[0]
    assert "sweep.storage_timeout_s" in err[0] and _listing(in_tmp) == before


def test_corrupt_mlflow_store(in_tmp, capsys):
    store = in_tmp / ".mlflow" / "mlflow.db"
    store.parent.mkdir()
    store.write_bytes(b"garbage" * 500)
    assert main(SMOKE) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: tracking.tracking_uri:") and "tracking=none" in err[0]
    assert not (in_tmp / "sweeps").exists() and _listing(in_tmp / ".mlflow") == ["mlflow.db"]


@pytest.mark.parametrize("prefix, words", [("abc", "too short"), ("zz12", "not hexadecimal"), ("abcd", "no trial with")])
def test_reproduce_bad_hash(prefix, words, in_tmp, capsys):
    from sweep.reproduce import main as reproduce_main

    assert reproduce_main([prefix]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: config-hash prefix") or err[0].startswith("error: no trial with")
    assert words in err[0]
    assert not (in_tmp / "sweeps").exists() and not (in_tmp / ".mlflow").exists()


def test_eval_label_with_one_train_example_is_warned_before_the_sweep_and_in_its_summary(in_tmp, capsys, monkeypatch):
    """Preflight's warning is printed before any worker starts and again at the end of the summary."""
    from sweep.orchestration import coordinator
    from sweep.orchestration.summary import SweepSummary

    (in_tmp / "train.jsonl").write_text("".join(f'{{"text": "row {i}", "label": "{y}"}}\n' for i, y in enumerate("aaabcc")))
    (in_tmp / "eval.jsonl").write_text('{"text": "e0", "label": "a"}\n{"text": "e1", "label": "b"}\n')
    started = []

    def fake_run(self):
        started.append(capsys.readouterr().err)  # what was on stderr when the sweep began
        return SweepSummary(self.study_name, "sqlite:///x", 1, 0, 0, 1.0, 1.0)

    monkeypatch.setattr(coordinator.Coordinator, "__init__", lambda self, run: setattr(self, "study_name", run.study_name))
    monkeypatch.setattr(coordinator.Coordinator, "run", fake_run)
    args = [*SMOKE, "tracking=none", "data=local_jsonl", f"data.train_file={in_tmp / 'train.jsonl'}",
            f"data.eval_file={in_tmp / 'eval.jsonl'}"]
    assert main(args) == 0
    warning = "warning: data.label_field: eval label ['b'] of "
    assert started and started[0].startswith(warning) and "single train example" in started[0]
    assert started[0].count("\n") == 1
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith(warning)
