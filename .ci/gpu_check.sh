#!/usr/bin/env bash
# make gpu-check: lorasweep's GPU checks and figures in one command (benchmarks/gpu_check.py), at most 8 minutes.
#
# Which Python: the project's .venv when its torch sees a GPU (make install on a GPU host), else the machine's own
# python3 with its preinstalled CUDA torch (the GPU test machine: no package registry), in a venv over its packages
# (.gpu-venv, --system-site-packages) with what it lacks installed from the carried wheels in .gpu-wheels (filled by
# `make gpu-wheels` on a machine with a registry), or from the registry where one answers. lorasweep itself runs
# from src/ (PYTHONPATH), so nothing is built. Exit: 0 every check passed, 1 one failed, 2 no GPU, 3 missing packages.
set -uo pipefail
cd "$(dirname "$0")/.."
has_cuda() { "$1" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; }
if [ -x .venv/bin/python ] && has_cuda .venv/bin/python; then
  PY=.venv/bin/python
elif has_cuda python3; then
  [ -x .gpu-venv/bin/python ] || python3 -m venv --system-site-packages .gpu-venv || exit 3
  PY=.gpu-venv/bin/python
  need=""
  for pair in bitsandbytes:bitsandbytes optuna:optuna hydra:hydra-core omegaconf:omegaconf; do
    "$PY" -c "import ${pair%%:*}" >/dev/null 2>&1 || need="$need ${pair##*:}"
  done
  if [ -n "$need" ]; then
    echo "gpu-check: installing$need into .gpu-venv"
    if [ -d .gpu-wheels ]; then
      "$PY" -m pip install -q --no-index --no-build-isolation --find-links .gpu-wheels $need || exit 3
    else
      "$PY" -m pip install -q $need || { echo "gpu-check: cannot install$need (no .gpu-wheels folder: make gpu-wheels on a machine with a registry)"; exit 3; }
    fi
  fi
else
  echo "gpu-check: no Python here whose torch sees a CUDA GPU (make install on the GPU host, or check the driver)"
  exit 2
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
echo "gpu-check: $("$PY" -c 'import sys, torch; print(sys.executable, "torch", torch.__version__, "CUDA", torch.version.cuda)')"
timeout "${GPU_CHECK_TIMEOUT_S:-480}" "$PY" benchmarks/gpu_check.py "$@"
