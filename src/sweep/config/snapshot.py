"""A sweep's private copy of its config folders.

Every trial of a run composes from the files as they were when the run started: editing
conf/ (or the user's --config-dir) mid-sweep cannot change later trials. One copy per
coordinator, so several coordinators on one host do not trip over each other; removed
when the run ends. It lives in the temp folder, not beside the study: a full output disk
must fail trials, not the sweep's start.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sweep.config.compose import conf_dir


@dataclass(frozen=True)
class ConfSnapshot:
    root: Path  # the folder holding the copies
    conf: Path  # the copy of the shipped groups
    config_dirs: tuple[str, ...]  # copies of the user's folders, in search-path order

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def take(config_dirs: list[str]) -> ConfSnapshot:
    """Copy the shipped config folder and the user's folders into a fresh temporary folder."""
    dst = Path(tempfile.mkdtemp(prefix="lorasweep-conf-"))
    conf = dst / "conf"
    shutil.copytree(conf_dir(), conf, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    users = []
    for i, d in enumerate(config_dirs):
        users.append(str(shutil.copytree(d, dst / f"user{i}").resolve()))
    return ConfSnapshot(dst.resolve(), conf.resolve(), tuple(users))
