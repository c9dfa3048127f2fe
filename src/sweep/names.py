"""The one rule for names that become folder names, and the looser one for names that only label things.

A *path name* becomes one folder: the study's `sweeps/<study>/` (its `study.db` and `trials/<n>-<hash>/`
inside), its report's `reports/<study>/`, a multitask report's `reports/multitask-<study>+<study>/`, and the
local MLflow artifact folder `<tracking.artifact_location>/<study>/`. `check_path_name` holds it to:

  allowed    letters, digits and . _ -        (no /, \\, spaces, quotes or control characters)
  refused    empty; starting with . or -; containing ..; longer than 100 characters

so it cannot climb out (`..`, `/x`), nest (`a/b`), hide (`.x`), pass for an option (`-x`) or outgrow a file-name
limit, and it also fits where studies are spelled elsewhere: MLflow tag keys (`lorasweep.serve.<study>.run_id`),
the quoted values of MLflow search filters, PEFT adapter names.

Where it is checked, before anything is written:
  sweep.study_name (`name` when it is null)  config/compose.parse, collected with every other config problem (so
                                             python -m sweep and python -m sweep.trial both refuse it)
  python -m sweep.report STUDY               report/__main__.py, unless STUDY is an existing study (below)
  python -m sweep.multitask STUDY ...        multitask/__main__.py, each study the same way
  python -m sweep.reproduce PREFIX           takes a config hash (hexadecimal, reproduce/lookup.py), never a name
  not yet written: sweep.plan names, --register and warm-start study names: call `check_path_name(key, value)`
  (or `path_name_problem` to collect it with other problems) where they are read.

A *display name* only labels: `sweep.experiment_name`, the MLflow experiment (null = the study name), may hold
`/` as hosted tracking servers use it (`team/intent`); `check_display_name` refuses only empty names, control
characters and more than 256 characters. Arm studies (`<study>[lora.targets=qv]`, orchestration/arms.py) are
Optuna study names inside the main study's storage and never a folder, so they need neither rule.

Studies named before the rule (`team/intent`, made by an older version) stay readable: `python -m sweep.report`
and `python -m sweep.multitask` look a study up by its exact name first (MLflow experiment or study tag) and,
when it exists, write into `folder_for(name)` (the name made safe: `team/intent` -> `team_intent`; the report says
so on stderr). A name is refused only where it would create a new path: `python -m sweep` refuses it even for a folder
an older version made (resuming writes new trial folders there); copy such a study under a safe name
(`optuna.copy_study`) to run it on.
"""

from __future__ import annotations

import hashlib
import re

from sweep.config.errors import ConfigError

MAX_LEN = 100  # characters of a path name
MAX_DISPLAY_LEN = 256  # characters of an MLflow experiment name (MLflow's own column width)
ALLOWED = "letters, digits and . _ - only, at most 100 characters, not starting with . or -"
_SAFE = re.compile(r"[A-Za-z0-9._-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _shown(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:30] + "..." + text[-6:]


def _why(value) -> str | None:
    """What is wrong with `value` as a folder name, or None."""
    if not isinstance(value, str):
        return f"is a {type(value).__name__}, not a name"
    if not value.strip():
        return "is empty"
    control = _CONTROL.search(value)
    if control:
        return f"contains a control character ({control.group()!r})"
    for sep in ("/", "\\"):
        if sep in value:
            return f"contains {sep!r}"
    if ".." in value:
        return "contains '..'"
    if value[0] in ".-":
        return f"starts with {value[0]!r}"
    if len(value) > MAX_LEN:
        return f"is {len(value)} characters long"
    bad = sorted(set(_SAFE.sub("", value)))
    if bad:
        return f"contains {' '.join(repr(c) for c in bad[:5])}"
    return None


def path_name_problem(key: str, value, hint: str = "", example: str | None = None) -> str | None:
    """`key: problem (fix)` when `value` cannot be one folder's name, else None (to collect with other problems).
    The fix suggests `example` with the safe form of `value` in place of `{}` (default `key={}`), then `hint`."""
    why = _why(value)
    if why is None:
        return None
    shown = _shown(value) if isinstance(value, str) else repr(value)
    suggestion = (example or f"{key}={{}}").format(folder_for(value))
    return f"{key}: {shown} cannot name a folder: it {why} (use {ALLOWED}; e.g. {suggestion}{hint})"


def check_path_name(key: str, value, example: str | None = None) -> str:
    """`value` when it is a safe folder name; else a ConfigError naming `key` and the allowed characters."""
    problem = path_name_problem(key, value, example=example)
    if problem:
        raise ConfigError([problem])
    return value


def is_path_name(value) -> bool:
    return _why(value) is None


def check_existing_or_path_name(key: str, value, exists, example: str | None = None) -> str:
    """A name that is read and may be written: an existing record (`exists()`) by its exact name, whatever it is;
    otherwise `check_path_name`. `exists` is only called for a name the rule refuses."""
    if is_path_name(value) or exists():
        return value
    return check_path_name(key, value, example)


def display_name_problem(key: str, value) -> str | None:
    """`key: problem (fix)` when `value` cannot label an MLflow experiment (it may contain /), else None."""
    if not isinstance(value, str) or not value.strip():
        return f"{key}: is empty (give a name, e.g. {key}=team/my_study, or null for the study name)"
    control = _CONTROL.search(value)
    if control:
        return f"{key}: {_shown(value)} contains a control character ({control.group()!r}); use printable characters"
    if len(value) > MAX_DISPLAY_LEN:
        return f"{key}: is {len(value)} characters long (at most {MAX_DISPLAY_LEN})"
    return None


def check_display_name(key: str, value) -> str:
    problem = display_name_problem(key, value)
    if problem:
        raise ConfigError([problem])
    return value


def shorten(name: str, limit: int = MAX_LEN) -> str:
    """`name`, or its first characters and a hash of the whole when it is longer than `limit`."""
    if len(name) <= limit:
        return name
    return f"{name[:limit - 11]}-{hashlib.sha1(name.encode('utf-8', 'surrogatepass')).hexdigest()[:10]}"


def folder_for(name) -> str:
    """The folder a name is written to: the name itself when it passes the rule, else a safe form of it
    (`team/intent` -> `team_intent`, `../x` -> `x`, a long one shortened with a hash of the whole)."""
    if is_path_name(name):
        return name
    text = str(name) if name is not None else ""
    safe = re.sub(r"\.{2,}", "_", re.sub(r"[^A-Za-z0-9._-]+", "_", text))
    safe = re.sub(r"_{2,}", "_", safe).lstrip("._-") or "study"
    return shorten(safe)


def joined(prefix: str, names: list[str], sep: str = "+", limit: int = 150) -> str:
    """One folder for several names (`multitask-a+b`): each made safe by `folder_for`, the whole shortened."""
    return shorten(prefix + sep.join(folder_for(n) for n in names), limit)
