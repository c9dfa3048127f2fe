"""`make gpu-check`: lorasweep on a GPU in one command, within 8 minutes: the `gpu` tests, then figures, one table.

    python benchmarks/gpu_check.py [--out FOLDER] [--skip-tests] [--cpu-dry-run]

1. The machine: GPU model, driver, torch / CUDA / bitsandbytes / transformers / peft versions.
2. The `gpu` tests (tests/test_gpu.py, tests/test_plan.py's GPU test), with LORASWEEP_GPU_CHECK=1 so that a skipped
   test is a failure (tests/conftest.py), except those needing a second GPU or Ray, listed as not run.
3. Figures for SmolLM2-135M by its shipped shape (random weights: same shapes, same FLOPs) in fp32, bf16 and NF4
   (bf16 compute), LoRA r=16 on q/v, batch 8 x 256 tokens: peak memory (torch.cuda.max_memory_allocated over
   training steps), the plan's prediction of it and the error, train tokens/s, MFU (model FLOP/s over the GPU's
   dense peak for that row's precision, FLOPs counted by torch's FlopCounterMode on a real training step), and greedy
   decoding latency per token, adapter unmerged and merged.

Writes FOLDER/gpu-check.md and FOLDER/gpu-check.json (FOLDER: --out, else $OUT when set, else reports/gpu-check) and
prints the table; exits 1 when a check failed. Speed figures are measured here, once per run, on the machine named
in the table: they are this machine's on this date, not a claim about others. `--cpu-dry-run` runs step 3 on the CPU
with a few steps, to check the script itself where no GPU is (tests/test_gpu_check.py).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

GPU_TESTS = ["tests/test_gpu.py", "tests/test_plan.py"]
ROWS = (("fp32", ["train.precision=fp32"]), ("bf16", ["train.precision=bf16"]),
        ("nf4", ["train.precision=bf16", "quant=nf4", "quant.compute_dtype=bfloat16"]))
FIGURE_BASE = ["model=smollm2_135m_shaped", "data=instruct_llm", "lora=qv", "lora.r=16", "tracking=none"]
BATCH, SEQ, STEPS, WARMUP, NEW_TOKENS = 8, 256, 10, 3, 32


def machine() -> dict:
    import torch

    out = {"date": datetime.date.today().isoformat(), "host": platform.node(), "python": platform.python_version(),
           "torch": torch.__version__, "cuda": torch.version.cuda or "none"}
    for name in ("bitsandbytes", "transformers", "peft", "accelerate", "optuna"):
        try:
            out[name] = __import__(name).__version__
        except Exception as exc:  # noqa: BLE001 - a missing package is reported, the table still prints
            out[name] = f"missing ({type(exc).__name__})"
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        out.update(gpu=props.name, gpu_memory_mib=props.total_memory // 2**20,
                   capability=f"{props.major}.{props.minor}", gpus=torch.cuda.device_count())
        try:
            out["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                           capture_output=True, text=True, timeout=10).stdout.split("\n")[0].strip()
        except (OSError, subprocess.TimeoutExpired):
            out["driver"] = "unknown"
    else:
        out.update(gpu="none (CPU dry run)", driver="-", capability="-", gpus=0)
    return out


def run_tests(folder: Path) -> list[dict]:
    """The gpu tests' verdicts: one row per test (passed, failed, not run with its reason)."""
    xml = folder / "gpu-tests.xml"
    env = {**os.environ, "LORASWEEP_GPU_CHECK": "1", "PYTHONPATH": str(ROOT / "src") + os.pathsep +
           os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", f"--junitxml={xml}",
           *GPU_TESTS]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, env=env, check=False)
    rows = []
    if not xml.is_file():
        return [{"check": "pytest -m gpu", "verdict": "FAILED", "detail": "pytest wrote no report"}]
    for case in ET.parse(xml).getroot().iter("testcase"):
        name = f"{Path(case.get('file') or case.get('classname', '').replace('.', '/')).stem}::{case.get('name')}"
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        skipped = case.find("skipped")
        if bad is not None:
            rows.append({"check": name, "verdict": "FAILED", "detail": (bad.get("message") or "")[:160]})
        elif skipped is not None:
            rows.append({"check": name, "verdict": "not run", "detail": (skipped.get("message") or "")[:160]})
        else:
            rows.append({"check": name, "verdict": "passed", "detail": f"{float(case.get('time', 0)):.1f} s"})
    return rows


def _batch(vocab: int, device: str, batch: int, seq: int):
    import torch

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (batch, seq), generator=g).to(device)
    return ids, torch.ones_like(ids), ids.clone()


def figures(device: str, steps: int, warmup: int, new_tokens: int, batch: int = BATCH, seq: int = SEQ) -> list[dict]:
    """One row per precision: memory, plan error, tokens/s, MFU, decoding latency unmerged and merged."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from sweep import devices
    from sweep.config.compose import compose
    from sweep.plan import plan_memory
    from sweep.plan.simulate import _real_model

    cuda = device == "cuda"
    card = devices.by_name(torch.cuda.get_device_name(0)) if cuda else None
    rows = []
    for label, overrides in ROWS:
        if not cuda and label == "nf4":
            continue  # CPU dry run: bitsandbytes' CPU 4-bit path is not what the GPU row measures
        cfg = compose([*FIGURE_BASE, *overrides, f"train.device={device}"]).trial
        precision = cfg.train.precision
        autocast = {"bf16": torch.bfloat16}.get(precision)
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            base_alloc = torch.cuda.memory_allocated()
        model, vocab = _real_model(cfg, None, device=device)
        model.to(device).train()
        ids, mask, labels = _batch(vocab, device, batch, seq)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=cuda)

        def step():
            with torch.autocast(device, dtype=autocast or torch.float32, enabled=autocast is not None):
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        for _ in range(warmup):
            step()
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        if cuda:
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - t0) / steps
        peak = (torch.cuda.max_memory_allocated() - base_alloc) / 2**20 if cuda else float("nan")
        with FlopCounterMode(display=False) as counter:
            step()
        flops = counter.get_total_flops()
        peak_flops = card.peak_flops("fp32" if precision == "fp32" else "bf16") if card else None
        plan = plan_memory(cfg, batch_size=batch, seq_len=seq,
                           compute_capability=torch.cuda.get_device_capability() if cuda else None,
                           kernels="cuda" if cuda else "cpu")
        unmerged, merged = _decode_latency(model, vocab, device, autocast, new_tokens)
        rows.append({"row": label, "precision": precision, "batch": batch, "seq": seq, "steps": steps,
                     "peak_memory_mb": peak,
                     "predicted_peak_memory_mb": plan.allocator_peak_mb,
                     "plan_error": (plan.allocator_peak_mb - peak) / peak if peak == peak and peak else float("nan"),
                     "train_tokens_per_s": batch * seq / seconds, "step_s": seconds, "flops_per_step": flops,
                     "mfu": flops / seconds / peak_flops if peak_flops else float("nan"),
                     "latency_per_token_ms_unmerged": unmerged, "latency_per_token_ms_merged": merged})
        del model, opt
        if cuda:
            torch.cuda.empty_cache()
    return rows


def _decode_latency(model, vocab: int, device: str, autocast, new_tokens: int) -> tuple[float, float]:
    """Median ms per generated token (greedy, KV cache, 3 runs), the adapter unmerged then merged into the base."""
    import torch

    model.eval()
    prompt = torch.randint(0, vocab, (1, 32), generator=torch.Generator().manual_seed(1)).to(device)

    def per_token(m) -> float:
        times = []
        for _ in range(3):
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            with torch.no_grad(), torch.autocast(device, dtype=autocast or torch.float32, enabled=autocast is not None):
                m.generate(prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                           pad_token_id=0)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) * 1000 / new_tokens)
        return statistics.median(times)

    unmerged = per_token(model)
    merged = per_token(model.merge_and_unload())
    return unmerged, merged


def _fmt(v, spec: str) -> str:
    return "-" if isinstance(v, float) and v != v else format(v, spec)


def table(info: dict, checks: list[dict], rows: list[dict]) -> str:
    lines = [f"# GPU check, {info['date']}: {info['gpu']}", "",
             "| machine | |", "| --- | --- |"]
    for k in ("gpu", "gpu_memory_mib", "capability", "gpus", "driver", "torch", "cuda", "bitsandbytes",
              "transformers", "peft", "accelerate", "optuna", "python", "host"):
        if k in info:
            lines.append(f"| {k} | {info[k]} |")
    lines += ["", "| check | verdict | detail |", "| --- | --- | --- |"]
    lines += [f"| {c['check']} | {c['verdict']} | {c['detail']} |" for c in checks] or ["| (tests skipped) | | |"]
    lines += ["", "SmolLM2-135M by its shape (random weights), LoRA r=16 on q,v; MFU = counted FLOPs per step / step "
              "time / the GPU's dense peak for the row's precision (sweep/devices.py); plan error = (predicted - "
              "measured) / measured.", "",
              "| row | batch x tokens | timed steps | peak MiB | predicted MiB | plan error | train tokens/s | MFU | "
              "ms/token unmerged | ms/token merged |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['row']} | {r['batch']} x {r['seq']} | {r['steps']} | {_fmt(r['peak_memory_mb'], ',.0f')} | "
                     f"{_fmt(r['predicted_peak_memory_mb'], ',.0f')} "
                     f"| {_fmt(r['plan_error'], '+.1%')} | {_fmt(r['train_tokens_per_s'], ',.0f')} | "
                     f"{_fmt(r['mfu'], '.1%')} | {_fmt(r['latency_per_token_ms_unmerged'], '.2f')} | "
                     f"{_fmt(r['latency_per_token_ms_merged'], '.2f')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="benchmarks/gpu_check.py", description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="folder for gpu-check.md / .json (default: $OUT, else reports/gpu-check)")
    ap.add_argument("--skip-tests", action="store_true", help="figures only")
    ap.add_argument("--cpu-dry-run", action="store_true", help="no GPU: the figures on the CPU, 2 steps (a check of "
                                                               "this script, not a measurement)")
    args = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available() and not args.cpu_dry_run:
        print("gpu-check: torch sees no CUDA GPU here (torch " + torch.__version__ + "); nothing to check",
              file=sys.stderr)
        return 2
    folder = Path(args.out or os.environ.get("OUT") or ROOT / "reports" / "gpu-check")
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    info = machine()
    checks = [] if args.skip_tests else run_tests(folder)
    dry = args.cpu_dry_run and not torch.cuda.is_available()
    try:
        rows = (figures("cpu", steps=1, warmup=1, new_tokens=2, batch=2, seq=32) if dry else
                figures("cuda", steps=STEPS, warmup=WARMUP, new_tokens=NEW_TOKENS))
    except Exception as exc:  # noqa: BLE001 - the table says what broke
        rows = []
        checks.append({"check": "figures", "verdict": "FAILED", "detail": f"{type(exc).__name__}: {exc}"[:160]})
    info["wall_s"] = round(time.time() - t0, 1)
    text = table(info, checks, rows) + f"\nwall time of the check: {info['wall_s']} s\n"
    (folder / "gpu-check.md").write_text(text)
    (folder / "gpu-check.json").write_text(json.dumps({"machine": info, "checks": checks, "figures": rows}, indent=2,
                                                      default=str))
    print(text)
    return 1 if any(c["verdict"] == "FAILED" for c in checks) else 0


if __name__ == "__main__":
    raise SystemExit(main())
