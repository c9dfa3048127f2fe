"""Every MLflow tag name lorasweep writes or reads, defined once.

Runs of a study: one parent run (`ROLE` = `ROLE_PARENT`) and one child run per Optuna
trial (`ROLE` = `ROLE_TRIAL`), linked by MLflow's own `PARENT_RUN` tag.
"""

from __future__ import annotations

PREFIX = "lorasweep."

ROLE = PREFIX + "role"  # parent | trial | baseline | serve
ROLE_PARENT = "parent"
ROLE_TRIAL = "trial"
ROLE_BASELINE = "baseline"  # the study's base model without an adapter (sweep/baseline.py)

# on every run of a study
STUDY = PREFIX + "study"
EXPERIMENT = PREFIX + "experiment"  # the experiment (config) name

# parent run
OBJECTIVES = PREFIX + "objectives"  # comma-separated metric names
GROUP_BY = PREFIX + "group_by"  # comma-separated config keys: the experiment's question
STORAGE = PREFIX + "storage"  # the Optuna storage URL
OVERRIDES = PREFIX + "overrides"  # JSON list: the command-line overrides the sweep was composed with
CONFIG_DIRS = PREFIX + "config_dirs"  # JSON list: the user's config folders on the search path
ARMS = PREFIX + "arms"  # JSON list of {"arm", "budget"}: the question's arms and the trials each gets
USER_TAG = "tag."  # prefix of the experiment's free-form `tags:` copied to the parent run

# trial runs
TRIAL_NUMBER = PREFIX + "trial_number"
CONFIG_HASH = PREFIX + "config_hash"
STATUS = PREFIX + "status"  # RUNNING | COMPLETE | PRUNED | FAILED | INFEASIBLE (ruled out before training)
INFEASIBLE = "INFEASIBLE"  # the STATUS of a config ruled out before training (sweep.plan.budget)
RULED_OUT = PREFIX + "ruled_out"  # why: the budget it exceeds and by how much (one line)
FAILURE_REASON = PREFIX + "failure_reason"
REUSED_FROM = PREFIX + "reused_from"  # trial number whose result was copied
DEVICE = PREFIX + "device"
SEED = PREFIX + "seed"
GIT_SHA = PREFIX + "git_sha"
GIT_DIRTY = PREFIX + "git_dirty"
HOST = PREFIX + "host"  # where the trial ran: hostname
NODE_ID = PREFIX + "node_id"  # Ray node id (empty on the local backend)
GPU = PREFIX + "gpu"  # CUDA_VISIBLE_DEVICES of the worker (empty on CPU)
GPU_NAME = PREFIX + "gpu_name"  # the worker's GPU model as CUDA reports it
GPU_UUID = PREFIX + "gpu_uuid"  # and its UUID
GPU_SHARE = PREFIX + "gpu_share"  # workers sharing that GPU (1: its own); empty on CPU
ARM = PREFIX + "arm"  # the question arm of the trial (`lora.targets=qv`), empty without arms
BASELINE_KEY = PREFIX + "baseline_key"  # the baseline (base model, quant, data, batch) a trial shares with others

# MLflow's own tags
PARENT_RUN = "mlflow.parentRunId"
EXPERIMENT_KIND = "mlflow.experimentKind"  # the UI opens "finetuning" experiments on their training runs
KIND_FINETUNING = "finetuning"


def role_filter(role: str, study: str | None = None) -> str:
    """An MLflow search filter for the runs of one role (and study)."""
    text = f"tags.`{ROLE}` = '{role}'"
    return text + (f" and tags.`{STUDY}` = '{study}'" if study else "")


def column(tag: str) -> str:
    """The column of a tag in `mlflow.search_runs`' DataFrame."""
    return f"tags.{tag}"
