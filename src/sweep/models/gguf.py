"""GGUF checkpoints as a model source, converted once and cached as safetensors.

A GGUF file is named by `model.gguf_file`: a path, or a file name inside the folder of
an installed pip package (`model.package`, located with importlib's find_spec, so the
package itself is never imported). transformers reads GGUF through the `gguf` package
and dequantizes every tensor, which takes tens of seconds; so the first trial writes
the dequantized model and its tokenizer to

    $LORASWEEP_CACHE/gguf/<sha256[:16]>/     (default ~/.cache/lorasweep/gguf/...)

and every later trial loads that folder in seconds. The folder is written under a
temporary name in the same parent and renamed into place, so two workers converting
at once cannot leave a half-written cache: one rename wins, the other copy is dropped.
The module inventory (preflight) reads only the config: from the cache when present,
else from the GGUF metadata (no weights converted).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from sweep.config.errors import ConfigError
from sweep.config.model_files import gguf_problems, package_folder, pip_name  # noqa: F401  (re-exported)
from sweep.digest import file_sha256 as _digest

CACHE_ENV = "LORASWEEP_CACHE"  # environment variable overriding the cache root
DEFAULT_CACHE = Path("~/.cache/lorasweep")
SOURCE_FILE = "gguf_source.json"  # written last into a converted folder: names the GGUF file and its sha256
KEY_LENGTH = 16  # hex characters of the sha256 in the cache folder name


def gguf_path(package: str | None, gguf_file: str | None) -> Path:
    """The GGUF file of a model config; a one-line ConfigError when it cannot be found."""
    problems = gguf_problems(package, gguf_file)
    if problems:
        raise ConfigError(problems)
    assert gguf_file is not None
    folder = package_folder(package) if package else None
    path = folder / gguf_file if folder else Path(gguf_file).expanduser()
    return path.resolve()


def file_sha256(path: Path) -> str:
    """sha256 of a file, memoised per (path, size, mtime)."""
    return _digest(path)


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def cache_folder(path: Path) -> Path:
    """Where the converted model of this GGUF file lives (whether or not it exists yet)."""
    return cache_root() / "gguf" / file_sha256(path)[:KEY_LENGTH]


def is_complete(folder: Path) -> bool:
    return (folder / SOURCE_FILE).is_file() and (folder / "config.json").is_file()


def convert(path: Path, dest: Path) -> None:
    """Dequantize the GGUF file into `dest`: config.json, model.safetensors, tokenizer files, SOURCE_FILE."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict = {"gguf_file": path.name, "dtype": torch.float32}
    try:  # transformers >= 5 can keep GGUF blocks packed; ask for plain dense weights explicitly
        from transformers import GgufConfig

        kwargs["quantization_config"] = GgufConfig(gguf_file=path.name, dequantize=True)
    except ImportError:
        pass
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), **kwargs)
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    model.save_pretrained(str(dest))
    tok.save_pretrained(str(dest))
    source = {"gguf_file": path.name, "sha256": file_sha256(path), "size_bytes": path.stat().st_size}
    (dest / SOURCE_FILE).write_text(json.dumps(source, indent=2, sort_keys=True) + "\n")


def ensure_cached(path: Path) -> Path:
    """The converted folder of this GGUF file, converting it first if no complete copy exists."""
    folder = cache_folder(path)
    if is_complete(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    print(f"lorasweep: converting {path.name} once into {folder} (dequantized safetensors)", file=sys.stderr, flush=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        convert(path, tmp)
        if folder.exists() and not is_complete(folder):
            shutil.rmtree(folder, ignore_errors=True)  # left by an older, interrupted layout
        try:
            os.rename(tmp, folder)  # atomic on one file system; fails if another worker got there first
        except OSError:
            if not is_complete(folder):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


@functools.lru_cache(maxsize=4)
def _metadata_config(path: str, sha: str):
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(str(Path(path).parent), gguf_file=Path(path).name)
    if getattr(cfg, "quantization_config", None) is not None:
        del cfg.quantization_config
    return cfg


def gguf_config(path: Path):
    """The transformers config: from the cache when converted, else from the GGUF metadata (no weights read)."""
    from transformers import AutoConfig

    folder = cache_folder(path)
    if is_complete(folder):
        return AutoConfig.from_pretrained(str(folder))
    import copy

    return copy.deepcopy(_metadata_config(str(path), file_sha256(path)))


def fingerprint(path: Path) -> str:
    """Names the GGUF file and its full sha256."""
    return f"{path.name}@sha256:{file_sha256(path)}"
