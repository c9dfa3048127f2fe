"""Silence library chatter that says nothing about the user's run (set before the heavy imports, and cheap:
importing nothing heavy itself, so that start-up does not pay for it)."""

from __future__ import annotations

import logging
import os
import warnings


def quiet_libraries() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # bitsandbytes warns once that an optional hub-downloaded CPU kernel is absent; its own kernel is used instead
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    for name in ("alembic", "mlflow", "optuna", "peft", "transformers", "urllib3", "httpx", "accelerate"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.ERROR)
    logging.getLogger("alembic.runtime.migration").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(peft|transformers|torch|bitsandbytes|mlflow)")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    # ask-and-tell with storage heartbeats is deliberate (the coordinator records them); experimental APIs pinned by tests
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    warnings.filterwarnings("ignore", message=r".*is experimental \(supported from")
    # optuna's own: its ExperimentalWarning subclasses UserWarning (heartbeats, TPE's `group`, fail_stale_trials are
    # used on purpose and pinned by tests), filtered without importing optuna (a second of start-up)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"optuna")
    warnings.filterwarnings("ignore", message=r".*(is experimental|is an experimental feature)")


def quiet_transformers() -> None:
    """Once transformers is imported anyway (workers, single trials): no progress bars."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
