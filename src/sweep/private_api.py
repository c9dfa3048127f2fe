"""Private APIs of dependencies that lorasweep relies on, each behind a guard that fails loudly.

A private name (`_x`, `x._private`, an interface a library documents as "not for library users") can change
or vanish in any release. Each one used here has no public replacement (see the list), so it is used through
`private_attr` / `private_module`, and its package is pinned in pyproject.toml to the minor versions it was
tested with (`SUPPORTED`, the same ranges: tests/test_private_api.py checks they agree). When the name is missing,
the error names the version found and the range to install; there is no silent fallback.

  bitsandbytes  functional._convert_weight_packed_for_cpu_inverse: brings a 4-bit weight repacked for CPU
                inference back to the layout dequantize_4bit reads; without it merge_and_unload adds the adapter
                to garbage (sweep.models.loader.unpack_cpu_inference). The public paths that run it
                (Params4bit.cuda(), Linear4bit's state-dict saving) move the weight or only unpack as a side
                effect. functional.has_avx512bf16 and Linear4bit.support_avx512bf16_for_cpu (undocumented)
                switch that repacking off while a trial trains (loader.set_cpu_inference_packing).
  optuna        the storage interface below Study (BaseStorage / BaseHeartbeat methods, which Optuna documents
                as not meant for library users) and the Trial constructor ("direct use is not recommended"):
                a RUNNING trial created with its parameters in one transaction, heartbeats and user attributes
                by trial number (sweep.orchestration.study). Study has no public equivalent.
  ray           _private.ray_constants.ENABLE_RAY_CLUSTER: keeps a loopback Ray on loopback when Ray was
                imported before RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER could be set (orchestration.ray_connect);
                _private.services.resolve_ip_for_localhost: .ci/ray_cluster.py turns off its rewrite of
                127.0.0.1 for the test cluster. Ray has no public setting for either.
"""

from __future__ import annotations

import importlib
import inspect
from importlib import metadata
from types import ModuleType
from typing import Any

# the minor versions each private API was tested with; pyproject.toml pins the same ranges
SUPPORTED: dict[str, str] = {"bitsandbytes": ">=0.50,<0.51", "optuna": ">=5.1,<5.2", "ray": ">=2.60,<2.61"}


class PrivateAPIError(RuntimeError):
    """A private API of a dependency is missing: the installed version is outside the range lorasweep supports."""


def installed(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "(not installed)"


def missing(package: str, what: str, why: str) -> PrivateAPIError:
    """The error for a missing private API: what is missing, from which installed version, why it matters, and
    the range to install."""
    want = SUPPORTED[package]
    return PrivateAPIError(f"{what} is missing from {package} {installed(package)}: lorasweep needs it ({why}) and "
                           f"supports {package}{want} only; install that range: pip install '{package}{want}'")


def private_module(package: str, module: str, *names: str, why: str) -> ModuleType:
    """Module `module` of `package`, checked to define every one of `names`; PrivateAPIError otherwise."""
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise missing(package, f"module {module}", why) from None
    absent = [n for n in names if not hasattr(mod, n)]
    if absent:
        raise missing(package, ", ".join(f"{module}.{n}" for n in absent), why)
    return mod


def private_attr(package: str, module: str, name: str, *, why: str) -> Any:
    """`module.name` of `package`; PrivateAPIError naming the installed version and the supported range if missing."""
    return getattr(private_module(package, module, name, why=why), name)


# the storage methods sweep.orchestration.study calls directly, below optuna.Study
OPTUNA_STORAGE_METHODS = ("get_study_id_from_name", "get_trial_id_from_study_id_trial_number", "create_new_trial",
                          "get_trial", "set_trial_user_attr", "record_heartbeat")
OPTUNA_WHY = "trials created, heartbeated and annotated by number through the study's storage"


def check_optuna_storage(storage) -> None:
    """The storage implements every method the sweep calls on it (an abstract one does not count), create_new_trial
    takes a template trial, and optuna.trial.Trial is still built from (study, trial_id)."""
    import optuna

    absent = []
    for name in OPTUNA_STORAGE_METHODS:
        fn = getattr(storage, name, None)
        if not callable(fn) or getattr(getattr(type(storage), name, None), "__isabstractmethod__", False):
            absent.append(f"{type(storage).__name__}.{name}")
    create = getattr(storage, "create_new_trial", None)
    if callable(create) and "template_trial" not in _parameters(create):
        absent.append(f"{type(storage).__name__}.create_new_trial(template_trial=)")
    if not {"study", "trial_id"} <= set(_parameters(optuna.trial.Trial.__init__)):
        absent.append("optuna.trial.Trial(study, trial_id)")
    if absent:
        raise missing("optuna", ", ".join(absent), OPTUNA_WHY)


def _parameters(fn) -> list[str]:
    try:
        return list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return []
