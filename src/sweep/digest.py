"""sha256 of files, memoised: a leaf module (standard library only) for whoever fingerprints a file.

sweep.provenance (run descriptions) and sweep.models.gguf (the GGUF cache key) both hash files; the hashing lives
here so that neither imports the other (provenance fingerprints models through the model modules).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path


@functools.lru_cache(maxsize=16)
def _file_digest(path: str, size: int, mtime: float) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    """Full sha256 hex of a file, memoised per (path, size, mtime): a 100 MB file is read once per process."""
    st = Path(path).stat()
    return _file_digest(str(Path(path).resolve()), st.st_size, st.st_mtime)


def folder_fingerprint(folder: Path) -> str:
    """sha256 over the config and weight files of a model folder (16 hex)."""
    h = hashlib.sha256()
    for f in sorted(folder.iterdir()):
        if f.is_file() and (f.suffix in (".json", ".safetensors", ".bin", ".txt", ".model")):
            st = f.stat()
            h.update(f.name.encode())
            h.update(_file_digest(str(f), st.st_size, st.st_mtime).encode())
    return h.hexdigest()[:16]
