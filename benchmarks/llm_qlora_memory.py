"""What an NF4 + double-quant base saves on SmolLM2-135M, each configuration in a fresh process.

A long-lived worker's heap carries the previous trial's freed memory, so the comparison is taken in one new
process per configuration: the same short trial (LoRA all-linear r=16, `train=llm` with fewer steps and a
smaller eval set) with `quant=none` and `quant=nf4`, reporting peak memory added by the trial (RSS delta:
resident weights + training), the process peak, train time per step and decoding latency per token.

    .venv/bin/python benchmarks/llm_qlora_memory.py              # 8 steps, 32 eval examples
    .venv/bin/python benchmarks/llm_qlora_memory.py --steps 4
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

_ONE = """
import json, sys
from sweep.quiet import quiet_libraries; quiet_libraries()
from sweep.config.compose import compose
from sweep.trial import run_trial
r = run_trial(compose(sys.argv[1:]).trial)
print("RESULT " + json.dumps({"status": r.status.value, "error": r.error, "metrics": r.metrics}))
"""
KEYS = ("peak_memory_mb", "peak_reserved_mb", "total_params", "train_time_s", "eval_accuracy", "latency_per_token_ms",
        "merged_latency_per_token_ms", "merge_max_abs_diff")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--eval-size", type=int, default=32)
    args = ap.parse_args(argv)
    common = ["model=smollm2_135m", "data=instruct_llm", "train=llm", "lora=all_linear", "lora.r=16", "lora.alpha=32",
              "tracking=none", f"train.max_steps={args.steps}", f"data.eval_size={args.eval_size}",
              "train.save_adapter=false"]
    print(f"{'quant':<6}" + "".join(f"{k:>30}" for k in KEYS))
    for quant in ("none", "nf4"):
        proc = subprocess.run([sys.executable, "-c", _ONE, *common, f"quant={quant}"], capture_output=True, text=True)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            print(f"{quant}: no result\n{proc.stderr[-2000:]}")
            return 1
        res = json.loads(line[len("RESULT "):])
        m = res["metrics"]
        if res["status"] != "COMPLETE":
            print(f"{quant}: {res['status']} {res['error']}")
            return 1
        m["train_time_s"] = m["train_time_s"] / args.steps  # per step
        print(f"{quant:<6}" + "".join(f"{m.get(k, float('nan')):>30.4g}" for k in KEYS), flush=True)
    print("(train_time_s is per step)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
