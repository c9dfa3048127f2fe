"""Config hashes survive the schema's growth.

Studies find their own trials by config hash: a resumed sweep reuses completed configs (and waits for a running twin)
by it, `python -m sweep.reproduce HASH` looks the trial up by it and warns when the rebuilt config hashes differently,
and a study's baseline is shared by its key (the same canonical form). So today's hashes are pinned here, and a field
added at its introduction default (registered in sweep.config.hashing.INTRODUCED) must leave them as they are.

Pinned form (one deterministic choice per experiment): the hash the sweep's dispatch computes for a trial of
`+experiment=NAME` with no sampled parameter, i.e. config_hash(TrialConfig.from_dict(trial_dict(overrides, {}, ...)))
== config_hash(compose([...]).trial), the experiment's trial_base with every schema default filled in. A few sampled
points (group choices, whole-list and per-element list parameters) are pinned beside them.
"""

from __future__ import annotations

import pytest

from sweep.config import hashing
from sweep.config.compose import compose, conf_dir, trial_dict
from sweep.config.hashing import INTRODUCED, canonical_json, config_hash, write_config
from sweep.config.schema import TrialConfig

# recorded 2026-12-01 from the shipped conf/ before the INTRODUCED registry existed
BASE_HASHES = {
    "fit_24gb": "af1f5ce1d22b",  # added 2026-12-04 (issue 19), with train.optimizer and lora.loraplus_lr_ratio registered
    "layerwise_ranks": "9285fa412d4a",
    "llm_layerwise": "0a2c34c42d02",
    "llm_qlora": "77c548d6a16e",
    "llm_qv_vs_all": "b88e7f0f7ed2",
    "qlora_vs_lora": "29f5020a2035",
    "qv_vs_all": "4abb1e5f5ba9",  # the same base trial as rank_sweep (lora=qv, alpha = 2r)
    "rank_sweep": "4abb1e5f5ba9",
    "smoke": "366ba6c95164",
}
DEFAULT_HASH = "dc46020e39d7"  # no experiment: conf/config.yaml's defaults

# (experiment, sampled parameters as dispatch passes them to trial_dict) -> hash; first = each parameter's first choice
POINT_HASHES = [
    ("layerwise_ranks", {"lora": "all_linear", "lora.r": 1}, "6ba43fce8ef7"),  # first
    ("layerwise_ranks", {"lora": "layerwise", "lora.band_ranks.0": 1, "lora.band_ranks.1": 2, "lora.band_ranks.2": 16},
     "fd4ccae67efa"),
    ("llm_layerwise", {"lora.band_ranks": [4, 4, 4]}, "3adec7a37e9a"),  # first
    ("llm_layerwise", {"lora.band_ranks": [1, 4, 7]}, "a7e9032e666c"),
    ("llm_qlora", {"quant": "none", "lora.r": 4}, "13b823cb3d07"),  # first
    ("llm_qlora", {"quant": "nf4", "lora.r": 16}, "9e1c7c83292f"),
    ("llm_qv_vs_all", {"lora.targets": "qv", "lora.r": 2, "lora.alpha_ratio": 0.5}, "4243d3f9fe8c"),  # first
    ("qlora_vs_lora", {"quant": "none", "lora.r": 4}, "df231e40d12b"),  # first
    ("qv_vs_all", {"lora.targets": "qv", "lora.r": 1, "lora.alpha_ratio": 0.5, "lora.dropout": 0.0}, "f12a22285ee8"),
    ("rank_sweep", {"lora.r": 1, "lora.use_rslora": False}, "5a7ecacb1b80"),  # first
    ("smoke", {"lora.targets": "qv", "lora.r": 1}, "2cb586c5db22"),  # first
]

# baseline keys (sweep.baseline.baseline_key: the same canonical form over model, quant, data and a few train keys)
BASELINE_KEYS = {
    "fit_24gb": "e06d85d61a7c",
    "layerwise_ranks": "bbc581036017",
    "llm_layerwise": "77c3c2138811",
    "llm_qlora": "77c3c2138811",
    "llm_qv_vs_all": "77c3c2138811",
    "qlora_vs_lora": "bbc581036017",
    "qv_vs_all": "bbc581036017",
    "rank_sweep": "bbc581036017",
    "smoke": "9f9d7cbc1c3f",
}

PROMISE = ("config hash of {what} moved: {old} -> {new}. Existing studies would stop reusing their completed trials "
           "(a resumed sweep retrains them), `python -m sweep.reproduce {old}` would warn that the config no longer "
           "hashes the same, and reports would split one config into two. A new trial-config field whose default keeps "
           "today's behaviour belongs in sweep.config.hashing.INTRODUCED (dotted path -> that default, with a comment) "
           "so that it is hashed only when set to something else; a change of how the hash is computed must keep these "
           "hashes. Only if an experiment's YAML now deliberately runs something else, update its pin and say so.")


def _base(name: str):
    return compose([f"+experiment={name}"])


def test_every_shipped_experiment_is_pinned():
    assert sorted(p.stem for p in (conf_dir() / "experiment").glob("*.yaml")) == sorted(BASE_HASHES), \
        "a shipped experiment was added or removed: pin its base hash in BASE_HASHES (and BASELINE_KEYS)"


@pytest.mark.parametrize("name", sorted(BASE_HASHES))
def test_base_hash_of_each_experiment_is_pinned(name):
    rc = _base(name)
    h = config_hash(rc.trial)
    assert h == BASE_HASHES[name], PROMISE.format(what=f"+experiment={name}", old=BASE_HASHES[name], new=h)
    # what dispatch hashes for a trial without sampled parameters is the same
    assert config_hash(TrialConfig.from_dict(trial_dict(rc.overrides, {}, set()))) == h


def test_default_config_hash_is_pinned():
    h = config_hash(compose([]).trial)
    assert h == DEFAULT_HASH, PROMISE.format(what="the default config", old=DEFAULT_HASH, new=h)


@pytest.mark.parametrize("name, params, expected", POINT_HASHES,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(POINT_HASHES)])
def test_sampled_points_are_pinned(name, params, expected):
    from sweep.orchestration.space import group_params

    rc = _base(name)
    h = config_hash(TrialConfig.from_dict(trial_dict(rc.overrides, params, group_params(rc.sweep.space))))
    assert h == expected, PROMISE.format(what=f"+experiment={name} {params}", old=expected, new=h)


@pytest.mark.parametrize("name", sorted(BASELINE_KEYS))
def test_baseline_keys_are_pinned(name):
    from sweep.baseline import baseline_key

    k = baseline_key(_base(name).trial)
    assert k == BASELINE_KEYS[name], (f"baseline key of +experiment={name} moved: {BASELINE_KEYS[name]} -> {k}; a resumed "
                                      "study would measure its baseline again. " + PROMISE.split(". ", 1)[1])


# ------------------------------------------------------------------ the registry


@pytest.fixture
def cfg_dict():
    return compose([]).trial.to_dict()


def _with(d: dict, path: str, value):
    import copy

    out = copy.deepcopy(d)
    node = out
    *parents, last = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return out


@pytest.mark.parametrize("path, default, other", [
    ("train.optimizer", "adamw_torch", "sgd"),
    ("lora.loraplus_lr_ratio", None, 16.0),
    ("data.scorer", "exact_match", "contains"),
    ("train.packing", False, True),
    ("train.packing", False, 0),  # False is not 0 (the hash tells them apart everywhere)
    ("lora.loraplus_lr_ratio", None, 0),
    ("train.label_smoothing", 0.0, 0.1),
])
def test_a_field_at_its_introduction_default_leaves_the_hash(cfg_dict, monkeypatch, path, default, other):
    # the mechanism on a field as it is introduced: an old config without it, nothing registered yet (train.optimizer
    # and lora.loraplus_lr_ratio exist and are registered since issue 19: start each case from before that)
    monkeypatch.delitem(INTRODUCED, path, raising=False)
    group, _, key = path.partition(".")
    cfg_dict[group].pop(key, None)
    before = hashing.hash_dict(cfg_dict)
    assert hashing.hash_dict(_with(cfg_dict, path, default)) != before, "unregistered, a new field is hashed"
    monkeypatch.setitem(INTRODUCED, path, default)
    assert hashing.hash_dict(_with(cfg_dict, path, default)) == before
    assert hashing.hash_dict(_with(cfg_dict, path, other)) != before
    assert hashing.hash_dict(cfg_dict) == before  # an old config without the field is unchanged too


def test_introduction_default_compared_in_hashed_form(cfg_dict, monkeypatch):
    before = hashing.hash_dict(cfg_dict)
    monkeypatch.setitem(INTRODUCED, "train.label_smoothing", 0)
    assert hashing.hash_dict(_with(cfg_dict, "train.label_smoothing", 0.0)) == before  # 0.0 hashes as 0 already
    monkeypatch.setitem(INTRODUCED, "train.stop_strings", ["\n"])
    assert hashing.hash_dict(_with(cfg_dict, "train.stop_strings", ("\n",))) == before  # a tuple is a list


def test_a_grown_schema_keeps_hashes_through_the_trial_config(monkeypatch):
    """The product hashes TrialConfig.to_dict() (every default filled in): a schema that grew a registered field keeps
    the hashes of old configs, which is what reuse and reproduce compare against."""
    cfg = _base("smoke").trial
    old_to_dict = TrialConfig.to_dict

    def grown(self):
        return _with(_with(old_to_dict(self), "train.optimizer", "adamw_torch"), "lora.loraplus_lr_ratio", None)

    monkeypatch.setattr(TrialConfig, "to_dict", grown)
    assert config_hash(cfg) != BASE_HASHES["smoke"]
    monkeypatch.setitem(INTRODUCED, "train.optimizer", "adamw_torch")
    monkeypatch.setitem(INTRODUCED, "lora.loraplus_lr_ratio", None)
    assert config_hash(cfg) == BASE_HASHES["smoke"]
    cfg.train.lr = 5e-4  # a real change still moves it
    assert config_hash(cfg) != BASE_HASHES["smoke"]


def test_reproduce_of_an_old_trial_after_the_schema_grew(tmp_path, monkeypatch):
    """An old trial folder (config.yaml without the new field): reproduce rebuilds it with today's defaults and finds the
    hash unchanged, so it warns of nothing."""
    from sweep.reproduce import reproduce
    from sweep.results import TrialResult, TrialStatus

    cfg = _base("smoke").trial
    h = config_hash(cfg)
    folder = tmp_path / "sweeps" / "smoke" / "trials" / f"0003-{h}"
    write_config(folder, cfg.to_dict())
    (folder / "result.json").write_text('{"status": "COMPLETE", "metrics": {"eval_accuracy": 0.5}}')
    old_to_dict = TrialConfig.to_dict
    monkeypatch.setattr(TrialConfig, "to_dict", lambda self: _with(old_to_dict(self), "data.scorer", "exact_match"))
    monkeypatch.setitem(INTRODUCED, "data.scorer", "exact_match")

    def runner(c, *, output_dir=None):
        return TrialResult(TrialStatus.COMPLETE, {"eval_accuracy": 0.5}, None, meta={"device": "cpu"})

    lines: list[str] = []
    out = reproduce(h[:6], tracking_uri=f"sqlite:///{tmp_path}/absent/mlflow.db", sweeps_dir=tmp_path / "sweeps",
                    runner=runner, log=lines.append)
    assert out.hash_now == h
    assert not [ln for ln in lines if "warning" in ln], lines


def test_reuse_and_reproduce_hash_with_the_one_function():
    """One owner: the sweep's dispatch (reuse, twins), the trial's meta.json and reproduce all use hashing.config_hash."""
    import inspect

    from sweep.orchestration import dispatch
    from sweep.reproduce import rerun
    from sweep.train import prepare

    assert dispatch.config_hash is hashing.config_hash
    assert prepare.config_hash is hashing.config_hash
    assert "from sweep.config.hashing import config_hash" in inspect.getsource(rerun.reproduce)


# ------------------------------------------------------------------ nested and list values


def test_nested_dict_field_and_a_sub_field_added_later(cfg_dict, monkeypatch):
    before = hashing.hash_dict(cfg_dict)
    generation = {"do_sample": False, "temperature": None, "stop": ["\n"]}
    monkeypatch.setitem(INTRODUCED, "data.generation", generation)
    assert hashing.hash_dict(_with(cfg_dict, "data.generation", dict(reversed(list(generation.items()))))) == before
    changed = {**generation, "temperature": 0.7}
    assert hashing.hash_dict(_with(cfg_dict, "data.generation", changed)) != before
    assert hashing.hash_dict(_with(cfg_dict, "data.generation", {**generation, "stop": []})) != before
    # later a sub-field joins the group: only its own entry is needed
    grown = {**generation, "top_k": None}
    assert hashing.hash_dict(_with(cfg_dict, "data.generation", grown)) != before
    monkeypatch.setitem(INTRODUCED, "data.generation.top_k", None)
    assert hashing.hash_dict(_with(cfg_dict, "data.generation", grown)) == before
    assert hashing.hash_dict(_with(cfg_dict, "data.generation", {**grown, "top_k": 50})) != before
    # a config that sets another generation key keeps that key hashed, and drops only the registered default
    a = hashing.hash_dict(_with(cfg_dict, "data.generation", {**grown, "temperature": 0.7}))
    b = hashing.hash_dict(_with(cfg_dict, "data.generation", {**generation, "temperature": 0.7}))
    assert a == b != before


def test_nested_field_inside_an_existing_dict_value(cfg_dict, monkeypatch):
    """A registered path reaches inside an existing dict-valued field (lora.module_ranks)."""
    base = _with(cfg_dict, "lora.module_ranks", {"value": 16})
    before = hashing.hash_dict(base)
    monkeypatch.setitem(INTRODUCED, "lora.module_ranks.gate", None)
    assert hashing.hash_dict(_with(base, "lora.module_ranks.gate", None)) == before
    assert hashing.hash_dict(_with(base, "lora.module_ranks.gate", 4)) != before


def test_list_values_are_compared_whole(cfg_dict, monkeypatch):
    before = hashing.hash_dict(cfg_dict)
    monkeypatch.setitem(INTRODUCED, "train.extra_modules", [])
    assert hashing.hash_dict(_with(cfg_dict, "train.extra_modules", [])) == before
    assert hashing.hash_dict(_with(cfg_dict, "train.extra_modules", ["embed_tokens"])) != before
    monkeypatch.setitem(INTRODUCED, "quant.extra_skip", ["a", "b"])
    assert hashing.hash_dict(_with(cfg_dict, "quant.extra_skip", ["a", "b"])) == before
    assert hashing.hash_dict(_with(cfg_dict, "quant.extra_skip", ["b", "a"])) != before  # order is part of a list
    assert hashing.hash_dict(_with(cfg_dict, "quant.extra_skip", ["a"])) != before
    # list elements are not paths: a registry entry for one cannot drop it
    monkeypatch.setitem(INTRODUCED, "lora.band_ranks.0", 2)
    ranked = _with(cfg_dict, "lora.band_ranks", [2, 4, 8])
    assert canonical_json(ranked).count("[2,4,8]") == 1


def test_runtime_knobs_stay_out(cfg_dict):
    before = hashing.hash_dict(cfg_dict)
    assert hashing.hash_dict(_with(_with(cfg_dict, "train.device", "cuda"), "train.threads", 7)) == before


def test_registered_paths_name_fields_of_todays_config():
    """A mistyped entry would leave its field hashed (and every hash moved): each path must reach a trial-config key."""
    d = compose([]).trial.to_dict()
    for path in INTRODUCED:
        node = d
        for part in path.split("."):
            assert isinstance(node, dict) and part in node, f"INTRODUCED[{path!r}]: no such key in the trial config"
            node = node[part]
