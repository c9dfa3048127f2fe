"""Build typed dataclasses from plain dicts, collecting every problem with its full key.

Hydra composes YAML into a DictConfig; the top layer turns it into a plain dict and
hands it here. Unknown keys, wrong types and `__post_init__` range checks are all
reported together, one line each (`lora.r: must be >= 1, got 0 (set lora.r to ...)`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar, Union

from sweep.config.errors import ConfigError, Problems

T = TypeVar("T")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, problems: Problems) -> Any:
    """Check/convert `value` against annotation `tp`; record a problem on mismatch."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            problems.add(key, "must not be null")
            return None
        non_none = [a for a in args if a is not type(None)]
        # try each member quietly; report against the first
        for a in non_none:
            trial = Problems()
            out = _coerce(value, a, key, trial)
            if not trial.items:
                return out
        problems.add(key, f"expected {' or '.join(_type_name(a) for a in non_none)}, got {value!r}")
        return value
    if value is None:
        problems.add(key, f"must not be null (expected {_type_name(tp)})")
        return None
    if origin in (list, tuple):
        (item_tp,) = typing.get_args(tp)[:1] or (Any,)
        if not isinstance(value, (list, tuple)):
            problems.add(key, f"expected a list, got {value!r}")
            return value
        return [_coerce(v, item_tp, f"{key}[{i}]", problems) for i, v in enumerate(value)]
    if origin is dict:
        k_tp, v_tp = typing.get_args(tp) or (Any, Any)
        if not isinstance(value, dict):
            problems.add(key, f"expected a mapping, got {value!r}")
            return value
        return {str(k): _coerce(v, v_tp, f"{key}.{k}", problems) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key, problems)
    if tp is bool:
        if isinstance(value, bool):
            return value
        problems.add(key, f"expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            problems.add(key, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.add(key, f"expected a number, got {value!r}")
            return value
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            problems.add(key, f"expected a string, got {value!r}")
        return value
    return value


def build(cls: type[T], data: Any, prefix: str, problems: Problems) -> T:
    """Instantiate dataclass `cls` from mapping `data`; problems are keyed `prefix.field`."""
    if not isinstance(data, dict):
        problems.add(prefix, f"expected a mapping for {cls.__name__}, got {data!r}")
        return None  # type: ignore[return-value]
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for k in data:
        if k not in fields:
            problems.add(
                f"{prefix}.{k}",
                f"unknown key (known keys of {prefix}: {', '.join(sorted(fields))})",
            )
    before = len(problems.items)
    for name in fields:
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], f"{prefix}.{name}", problems)
    if len(problems.items) > before:
        return None  # type errors make range checks meaningless
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        problems.extend(exc.problems)
    except TypeError as exc:  # a required field is missing
        problems.add(prefix, str(exc))
    return None  # type: ignore[return-value]


def from_dict(cls: type[T], data: Any, prefix: str) -> T:
    """Build `cls` from `data` or raise ConfigError listing every problem."""
    problems = Problems()
    out = build(cls, data, prefix, problems)
    problems.raise_if_any()
    return out


def to_dict(obj: Any) -> dict:
    return dataclasses.asdict(obj)
