"""Checks done before any worker starts, any model is trained or anything is written.

The data is loaded (columns, labels, empty or malformed files, fewer than two labels; a warning for an eval
label with one train example or none after the split); the base config's adapter
plan is built against the model's module inventory (meta device: no weights); every
explicit target list and group option in the search space is tried; every space key must
name an existing config key; the Optuna storage and the MLflow store must be usable; with
sweep.backend=ray the cluster must answer and, with several nodes, MLflow must be a server. With a budget
(sweep.memory_budget_mb, sweep.max_trainable_params) the space's configs are planned (sweep.plan: the grid, or a
seeded sample): none within it is an error, some beyond it a warning.
"""

from __future__ import annotations

from sweep.config.compose import RunConfig, compose_dict, get_path
from sweep.config.errors import ConfigError, Problems


def check_data(data, seed: int) -> list[str]:
    """Load the dataset once (not from the hub: that happens in the trial) so bad files fail here; returns the
    warnings about it (an eval label with a single train example, or none left after the split)."""
    if data.source == "hub":
        return []
    from sweep.data import DataError, label_warnings, load_records

    try:
        records = load_records(task=data.task, source=data.source, name=data.name, train_file=data.train_file,
                     eval_file=data.eval_file, train_split=data.train_split, eval_split=data.eval_split,
                     text_field=data.text_field, label_field=data.label_field, instruction_field=data.instruction_field,
                     input_field=data.input_field, output_field=data.output_field, train_size=data.train_size,
                     eval_size=data.eval_size, seed=seed)
    except DataError as exc:
        raise ConfigError([str(exc)]) from None
    where = data.train_file if data.source == "local" else f"built-in dataset {data.name!r}"
    return label_warnings(records, where)


def check_stores(run: RunConfig) -> None:
    from sweep.orchestration.study import check_storage, storage_url

    check_storage(storage_url(run.sweep.storage, run.sweep.output_dir, run.study_name), run.sweep.storage_timeout_s)
    if run.tracking.backend == "mlflow":
        from sweep.tracking.mlflow_tracker import check_store

        check_store(run.tracking.tracking_uri, run.tracking.artifact_location)


def preflight(run: RunConfig) -> list[str]:
    """Every check above, or a ConfigError; returns the warnings (one line each, `key: what (fix)`) the sweep goes on
    with: `python -m sweep` prints them before the first trial and again in the summary."""
    if run.sweep.backend == "ray":  # the cluster answers and every node can reach the MLflow store
        from sweep.orchestration.ray_connect import check_cluster

        check_cluster(run)
    check_precision(run)
    check_gpus(run)
    warnings = check_data(run.trial.data, run.trial.train.seed)
    _check_structure(run)
    warnings += check_budget(run)
    check_stores(run)
    return warnings


def check_precision(run: RunConfig) -> None:
    """The precisions the sweep may train at can run on its GPUs: `auto` is resolved from this machine's GPUs, so a
    Ray sweep (trained on the cluster's) must name one; bf16 (training, or 4-bit compute) needs compute capability
    8.0 on every GPU the local workers get."""
    from sweep import gpus

    spec = run.sweep.space.get("train.precision")
    wanted = {str(run.raw.get("train", {}).get("precision", "")), *(str(c) for c in (spec.choices or [] if spec else []))}
    auto = "auto" in wanted or run.raw.get("quant", {}).get("compute_dtype") == "auto"
    if run.sweep.backend == "ray" and auto:
        raise ConfigError(["train.precision: auto is resolved from this machine's GPUs, but sweep.backend=ray trains on "
                           "the cluster's: set train.precision=bf16 (compute capability 8.0 and newer) or fp16, and "
                           "quant.compute_dtype to match"])
    if run.sweep.backend != "local" or run.trial.train.device == "cpu":
        return
    resolved = {gpus.auto_precision(run.trial.train.device) if w == "auto" else w for w in wanted}
    q = run.trial.quant
    bf16 = "bf16" in resolved or (q.enabled and q.compute_dtype == "bfloat16")
    weak = gpus.without_bf16()
    if bf16 and weak:
        g = weak[0]
        raise ConfigError([f"train.precision: bf16 needs compute capability 8.0, but GPU {g.index} ({g.name}) has "
                           f"{g.capability[0]}.{g.capability[1]}: use train.precision=auto (fp16 there) or fp16, and "
                           "quant.compute_dtype=auto or float16"])


def check_gpus(run: RunConfig) -> None:
    """A local GPU sweep: enough GPUs for sweep.gpus_per_worker, and the base model's weights (as stored for its
    quantization, sweep.plan's exact figure) within what a worker's GPUs leave for weights (loader.SPREAD_HEADROOM of
    each when spread, the whole of one otherwise less the CUDA context): trial after trial of OOMs, refused now."""
    from sweep import gpus
    from sweep.devices import gib
    from sweep.models.loader import SPREAD_HEADROOM

    if run.sweep.backend != "local" or run.trial.train.device == "cpu":
        return
    usable = gpus.usable()
    n = run.sweep.gpus_per_worker
    if not usable:
        return
    if n > len(usable):
        raise ConfigError([f"sweep.gpus_per_worker: {n} GPUs per worker, but this machine shows {len(usable)}: lower "
                           "it, or make more GPUs visible (CUDA_VISIBLE_DEVICES)"])
    sizes = sorted(g.memory_mib for g in usable if g.memory_mib)
    if len(sizes) < n:
        return  # memory not reported (MIG instances, an old driver): the trial will tell
    from sweep.plan.build import model_facts
    from sweep.plan.memory import MIB, num_labels_of

    try:
        facts = model_facts(run.trial, num_labels_of(run.trial)[0])
    except ConfigError:
        return  # a model the planner does not plan: nothing to compare
    weights = (facts.stored_bytes - facts.trainable_bytes) / MIB
    share = run.sweep.workers_per_gpu  # a worker on a shared GPU may allocate its share (worker.cap_memory)
    room = sum(sizes[:n]) * SPREAD_HEADROOM if n > 1 else sizes[0] / share - 500.0  # (500: the CUDA context, as planned)
    if weights > room:
        raise ConfigError([f"sweep.gpus_per_worker: model {run.trial.model.name}'s weights take {gib(weights)} as "
                           f"stored, more than the {gib(room)} {'one GPU' if n == 1 else f'{n} GPUs'} of this machine "
                           f"{'leaves' if n == 1 else 'leave'} for weights (the smallest: {gib(sizes[0])}"
                           f"{f', shared by {share} workers' if share > 1 and n == 1 else ''}): raise "
                           "sweep.gpus_per_worker, lower sweep.workers_per_gpu, or quantize (quant=nf4)"])


def check_budget(run: RunConfig, sample: int = 24) -> list[str]:
    """The space's configs against the sweep's budgets (the whole grid, or `sample` drawn at random): a ConfigError
    when none is within them (or the model cannot be planned for a memory budget), a warning saying how many are
    ruled out otherwise."""
    from sweep.devices import gib
    from sweep.plan.budget import MEMORY, Budget, rule_out
    from sweep.plan.configs import space_configs

    budget = Budget.of(run.sweep)
    if not budget.active:
        return []
    key = "sweep.memory_budget_mb" if budget.memory_mb is not None else "sweep.max_trainable_params"
    configs = space_configs(run, sample=sample, seed=run.sweep.sampler_seed)
    try:
        verdicts = [rule_out(cfg, budget) for _, cfg in configs.points]
    except ConfigError as exc:
        raise ConfigError([f"{key}: {exc.problems[0]}"]) from None
    out = [v for v in verdicts if v is not None]
    if not out:
        return []
    what = configs.describe()
    if len(out) == len(verdicts):
        memory = [v for v in out if v.constraint == MEMORY]
        smallest = (f"; the smallest predicted is {gib(min(v.predicted for v in memory))} against "
                    f"{budget.memory_label}" if memory else "")
        raise ConfigError([f"{key}: none of {what} is within the budget{smallest} (e.g. {out[0].reason}); raise the "
                           "budget, lower train.batch_size or data.max_seq_len, narrow the space, or see "
                           "python -m sweep.plan"])
    return [f"{key}: {len(out)} of {what} are ruled out before training (e.g. {out[0].reason}); they are recorded, "
            "not trained, and do not count toward sweep.n_trials"]


def _check_structure(run: RunConfig) -> None:
    from sweep import adapters
    from sweep.config.schema import LoraConfig, TrialConfig
    from sweep.models.inventory_cache import cached_inventory as inventory

    p = Problems()
    base = run.trial_base
    space = run.sweep.space
    for key, spec in space.items():
        if spec.type == "group":
            for choice in spec.choices:
                try:
                    composed = compose_dict([*run.overrides, f"{key}={choice}"], run.config_dirs)
                    TrialConfig.from_dict({**base, key: composed[key]})
                except ConfigError as exc:
                    p.add(f"sweep.space.{key}", f"option {choice!r}: {exc.problems[0]}")
            continue
        parent, _, last = key.rpartition(".")
        head = parent if last.isdigit() else key
        group, _, rest = head.partition(".")
        if group not in base or (rest and rest.split(".")[0] not in base[group]):
            p.add(f"sweep.space.{key}", f"no config key {head!r} (keys of {group}: {', '.join(base.get(group, {}))})")
    p.raise_if_any()
    trial = run.trial
    num_labels = 2 if trial.data.task == "classification" else None
    inv = inventory(trial.model, trial.data.task, num_labels)
    adapters.plan(trial.lora, inv)
    spec = space.get("lora.targets")
    if spec is not None and spec.choices:
        for choice in spec.choices:
            lora = LoraConfig(**{**run.raw["lora"], "targets": choice})
            try:
                adapters.plan(lora, inv)
            except ConfigError as exc:
                p.add("sweep.space.lora.targets", f"choice {choice!r}: {exc.problems[0]}")
    for key, want in ((k, s.when) for k, s in space.items() if s.when):
        for cond in want:
            if cond not in space and get_path(base, cond) is None and cond.split(".")[0] not in base:
                p.add(f"sweep.space.{key}.when", f"{cond!r} is neither a space parameter nor a config key")
    p.raise_if_any()
