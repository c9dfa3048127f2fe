"""`python -m sweep.plan +experiment=NAME [overrides] [--gpu ID | --device-memory SIZE]`: will each config fit?

For every config of the experiment's search space (the whole grid, or a seeded sample of a continuous one: the
header says which and how many), one row: the varying parameters, each part of the predicted peak memory in MiB
(sweep.plan.memory), the total, whether it fits the device, and the largest train.batch_size that would. Seconds
on a CPU: every model is built on the meta device, no weights are read and no GPU is needed.
"""

from __future__ import annotations

import argparse
import sys

from sweep import devices

DESCRIPTION = ("Will each config of an experiment fit a GPU? One row per config of its search space: the predicted "
               "peak memory by part (MiB), the total, fits or not, and the largest batch that fits. No GPU, no weights.")
USAGE = "python -m sweep.plan +experiment=NAME [override ...] [--gpu ID | --device-memory SIZE] [--sample N] [--seed S]"
EPILOG = ("examples: python -m sweep.plan +experiment=fit_24gb; python -m sweep.plan +experiment=qv_vs_all --gpu t4; "
          f"python -m sweep.plan model=llama3_1_8b data=instruct_llm quant=nf4 --device-memory 24GiB. GPU ids: {devices.ids()}")
PAGED_NOTE = ("paged: a paged optimizer's state in CUDA unified memory, outside PyTorch's allocator; it may spill "
              "to host memory when the card is full, and is counted as resident in total")
BATCH_LIMIT = 4096  # the largest batch searched for
COLUMNS = (("weights", "base_weights_mb"), ("adapter", "adapter_mb"), ("grads", "grads_mb"),
           ("optim", "optimizer_mb"), ("paged", "paged_mb"), ("act", "activations_mb"), ("alloc", "allocator_peak_mb"),
           ("fixed", "fixed_mb"), ("total", "total_mb"))


class UsageError(Exception):
    """A bad command-line argument: one line naming the flag and the fix."""


def parse_size(text: str) -> float:
    """MiB in a size like 24GiB, 80GB, 24576MiB or 24576 (MiB)."""
    try:
        return devices.memory_size(text)
    except ValueError as exc:
        raise UsageError(f"--device-memory: {exc}") from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own errors become one line and exit 2, like ours
        raise UsageError(f"{message} ({USAGE})")


def _parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="python -m sweep.plan", usage=USAGE, description=DESCRIPTION, epilog=EPILOG,
                 allow_abbrev=False)
    ap.add_argument("--gpu", metavar="ID", help=f"plan for a card of sweep/devices.py ({devices.ids()})")
    ap.add_argument("--device-memory", metavar="SIZE", help="plan for this much device memory (24GiB, 80GB, 24576MiB)")
    ap.add_argument("--sample", type=int, default=24, metavar="N", help="configs drawn from a continuous space (24)")
    ap.add_argument("--seed", type=int, default=0, metavar="S", help="seed of that draw (0)")
    return ap


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """(the flags, the Hydra overrides and --config-dir folders)."""
    args, rest = _parser().parse_known_args(argv)
    after_config_dir = False
    for a in rest:
        if a.startswith("-") and not after_config_dir and a not in ("--config-dir", "-cd") \
                and not a.startswith("--config-dir="):
            raise UsageError(f"{a}: unknown flag (the flags are --gpu, --device-memory, --sample, --seed; "
                             "everything else is a Hydra override such as lora.r=8)")
        after_config_dir = a in ("--config-dir", "-cd")
    if args.gpu and args.device_memory:
        raise UsageError("--gpu and --device-memory: give one of them (--gpu names a card, --device-memory a size)")
    if args.sample < 1:
        raise UsageError(f"--sample: must be >= 1, got {args.sample}")
    return args, rest


def device_of(args: argparse.Namespace) -> tuple[str, float, tuple[int, int] | None]:
    """(label, MiB, compute capability) of the device asked for; the generic 24 GiB card by default."""
    if args.device_memory:
        mib = parse_size(args.device_memory)
        return f"{args.device_memory} of device memory ({mib:,.0f} MiB)", mib, None
    gpu_id = args.gpu or "24gb"
    try:
        d = devices.by_id(gpu_id)
    except KeyError:
        raise UsageError(f"--gpu: unknown GPU id {gpu_id!r} (known: {devices.ids()}; or give --device-memory 24GiB)") from None
    return f"{d.name} ({d.memory_mib:,} MiB)", float(d.memory_mib), d.compute_capability


def _mib(v: float) -> str:
    """Three significant figures or more: 0.03, 4.56, 42.1, 1,234."""
    if v == 0:
        return "0"
    if v < 10:
        return f"{v:.2f}"
    if v < 100:
        return f"{v:.1f}"
    return f"{v:,.0f}"


def _short(keys: list[str]) -> dict[str, str]:
    """Column names for the varying parameters: the last part of the key unless two keys share it."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list):
        return "[" + ",".join(map(str, v)) + "]"
    return str(v)


def render(rows: list[list[str]], header: list[str], right: set[int]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(r: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def plan_table(run, device_mb: float, capability, *, sample: int, seed: int) -> tuple[str, str, list[str]]:
    """(what was planned, the table, notes) for a composed run."""
    from sweep.plan.configs import space_configs
    from sweep.plan.memory import largest_batch, plan_memory

    configs = space_configs(run, sample=sample, seed=seed)
    keys = list(run.sweep.space) if run.sweep.space else []
    names = _short(keys)
    header = [names[k] for k in keys] + [c for c, _ in COLUMNS] + ["fits", "max batch"]
    rows, notes = [], []
    for params, cfg in configs.points:
        p = plan_memory(cfg, compute_capability=capability)
        best = largest_batch(cfg, device_mb, compute_capability=capability, limit=BATCH_LIMIT)
        parts = p.parts()
        rows.append([_fmt(params.get(k, "-")) for k in keys] + [_mib(parts[a]) for _, a in COLUMNS]
                    + ["yes" if p.fits(device_mb) else "no", f">={best}" if best >= BATCH_LIMIT else str(best)])
        notes += [n for n in p.notes if n not in notes]
        if p.paged_mb and PAGED_NOTE not in notes:
            notes.append(PAGED_NOTE)
    right = set(range(len(keys), len(header)))
    return configs.describe(), render(rows, header, right), notes


def main(argv: list[str] | None = None) -> int:
    from sweep.config.compose import compose, split_config_dirs
    from sweep.config.errors import ConfigError
    from sweep.quiet import quiet_libraries, quiet_transformers

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args, rest = parse_args(argv)
        label, device_mb, capability = device_of(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    quiet_libraries()
    quiet_transformers()
    try:
        dirs, overrides = split_config_dirs(rest)
        run = compose(overrides, dirs)
        if run.raw.get("train", {}).get("precision") == "auto":  # auto means the planned card's precision, not this
            # machine's: bf16 from compute capability 8.0 (a generic card is taken as a recent one), else fp16
            precision = "fp16" if capability is not None and capability < (8, 0) else "bf16"
            run = compose([*overrides, f"train.precision={precision}"], dirs)
        what, table, notes = plan_table(run, device_mb, capability, sample=args.sample, seed=args.seed)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t = run.trial
    print(f"{run.name}: {what} of model={t.model.name} (task {t.data.task}), planned for {label}")
    print(f"batch x tokens: the config's train.batch_size x data.max_seq_len (the longest batch); 'max batch': the "
          f"largest train.batch_size that fits at that length")
    print(table)
    print("parts in MiB. alloc = what torch.cuda.max_memory_allocated() would read after a step (weights + adapter + "
          "grads + optim + act + cuBLAS workspace); fixed = CUDA context (500 MiB) + allocator reserve (10% of "
          "alloc), assumed until measured; total = alloc + fixed + paged. Formula and assumptions: "
          "src/sweep/plan/activations.py, docs/memory-planning.md")
    for n in notes:
        print(f"note: {n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
