"""Every private API of a dependency fails loudly when missing: an error naming the version found and the range to
install (sweep/private_api.py), never a silent fallback; and its package is pinned to that range in pyproject.toml."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from sweep import private_api as pa

ROOT = Path(__file__).resolve().parents[1]


def _loud(exc: pytest.ExceptionInfo, package: str, name: str) -> None:
    text = str(exc.value)
    assert name in text, text
    assert f"{package} {pa.installed(package)}" in text, text  # the version found
    assert f"pip install '{package}{pa.SUPPORTED[package]}'" in text, text  # the range to install


def test_the_supported_ranges_are_the_pins_in_pyproject_and_the_installed_versions_satisfy_them():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    reqs += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    for package, spec in pa.SUPPORTED.items():
        pinned = [r for r in reqs if r.name == package]
        assert pinned and all(str(r.specifier) == ",".join(sorted(spec.split(","))) for r in pinned), (package, pinned)
        version = pa.installed(package)
        if version != "(not installed)":
            assert pinned[0].specifier.contains(version), f"{package} {version} is outside {spec}"


# bitsandbytes ------------------------------------------------------------------------------------------------

def _model_with_a_4bit_layer():
    import bitsandbytes as bnb
    import torch

    return torch.nn.Sequential(bnb.nn.Linear4bit(16, 16, quant_type="nf4"))


def test_unpacking_without_bitsandbytes_private_function_is_an_error(monkeypatch):
    import bitsandbytes.functional as F
    import torch

    from sweep.models.loader import unpack_cpu_inference

    model = _model_with_a_4bit_layer()
    assert unpack_cpu_inference(model) == 0  # present: nothing was packed, nothing converted
    monkeypatch.delattr(F, "_convert_weight_packed_for_cpu_inverse")
    with pytest.raises(pa.PrivateAPIError) as exc:  # was: `except ImportError: return 0`, and a merge into garbage
        unpack_cpu_inference(model)
    _loud(exc, "bitsandbytes", "bitsandbytes.functional._convert_weight_packed_for_cpu_inverse")
    assert "merge_and_unload" in str(exc.value)
    assert unpack_cpu_inference(torch.nn.Sequential(torch.nn.Linear(4, 4))) == 0  # no 4-bit weight: not needed


def test_cpu_packing_switch_without_bitsandbytes_names_is_an_error(monkeypatch):
    import bitsandbytes.functional as F

    from sweep.models.loader import set_cpu_inference_packing

    model = _model_with_a_4bit_layer()
    set_cpu_inference_packing(model, False)
    assert model[0].support_avx512bf16_for_cpu is False
    del model[0].support_avx512bf16_for_cpu
    with pytest.raises(pa.PrivateAPIError) as exc:
        set_cpu_inference_packing(model, False)
    _loud(exc, "bitsandbytes", "Linear4bit.support_avx512bf16_for_cpu")
    monkeypatch.delattr(F, "has_avx512bf16")
    with pytest.raises(pa.PrivateAPIError) as exc:  # was: `except ImportError: return`, packing left on in training
        set_cpu_inference_packing(_model_with_a_4bit_layer(), False)
    _loud(exc, "bitsandbytes", "bitsandbytes.functional.has_avx512bf16")


# optuna ------------------------------------------------------------------------------------------------------

def test_an_optuna_storage_without_the_methods_the_sweep_calls_is_an_error(tmp_path, monkeypatch):
    import optuna

    from sweep.orchestration.study import SweepStudy

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")
    pa.check_optuna_storage(storage)  # the installed Optuna has all of them
    monkeypatch.delattr(optuna.storages.RDBStorage, "record_heartbeat")  # BaseHeartbeat's abstract one is left
    with pytest.raises(pa.PrivateAPIError) as exc:
        SweepStudy(None, "s", "sqlite://", storage=storage)  # checked before the study is opened
    _loud(exc, "optuna", "RDBStorage.record_heartbeat")
    monkeypatch.undo()

    def changed(self, study, number):  # noqa: ARG001
        pass

    monkeypatch.setattr(optuna.trial.Trial, "__init__", changed)
    with pytest.raises(pa.PrivateAPIError) as exc:
        pa.check_optuna_storage(storage)
    _loud(exc, "optuna", "optuna.trial.Trial(study, trial_id)")
    with pytest.raises(pa.PrivateAPIError) as exc:
        pa.check_optuna_storage(object())
    _loud(exc, "optuna", "object.get_trial_id_from_study_id_trial_number")


# ray ---------------------------------------------------------------------------------------------------------

def test_a_ray_without_its_cluster_constant_is_an_error_when_loopback_is_asked(monkeypatch):
    from sweep.orchestration import ray_connect as rc

    monkeypatch.setenv(rc.SINGLE_MACHINE_ENV, "0")
    constants = types.ModuleType("ray._private.ray_constants")
    monkeypatch.setitem(sys.modules, "ray", types.ModuleType("ray"))  # Ray imported before the variable was set
    monkeypatch.setitem(sys.modules, "ray._private.ray_constants", constants)
    with pytest.raises(pa.PrivateAPIError) as exc:  # was: sys.modules.get(...) is None, silently nothing set
        rc.keep_loopback("local")
    _loud(exc, "ray", "ray._private.ray_constants.ENABLE_RAY_CLUSTER")
    constants.ENABLE_RAY_CLUSTER = True
    rc.keep_loopback("127.0.0.1:6379")
    assert constants.ENABLE_RAY_CLUSTER is False
    constants.ENABLE_RAY_CLUSTER = True
    rc.keep_loopback("10.0.0.5:6379")  # not a loopback address: left alone
    assert constants.ENABLE_RAY_CLUSTER is True


def test_the_ci_cluster_shim_fails_loudly_on_a_ray_without_resolve_ip_for_localhost(tmp_path):
    spec = importlib.util.spec_from_file_location("ray_cluster", ROOT / ".ci" / "ray_cluster.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    fake = tmp_path / "ray" / "_private"
    fake.mkdir(parents=True)
    for f in (fake.parent / "__init__.py", fake / "__init__.py", fake / "services.py"):
        f.write_text("")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT / "src")])}
    out = subprocess.run([sys.executable, "-c", script.SHIM, "start"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode != 0
    assert "PrivateAPIError: ray._private.services.resolve_ip_for_localhost is missing from ray" in out.stderr, out.stderr
    assert f"pip install 'ray{pa.SUPPORTED['ray']}'" in out.stderr
