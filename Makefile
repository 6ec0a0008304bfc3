# The two front-door commands: `make demo` and `make test`. Both set up .venv on first use and are
# idempotent: the second run only re-installs when pyproject.toml changed.
# The newest python3.1x (>= 3.11) on PATH that runs (a pyenv shim of an absent version is found but fails):
# Debian 12 has 3.11, Ubuntu 24.04 (DGX OS) 3.12. Override: PYTHON=...
PYTHON ?= $(or $(firstword $(foreach v,14 13 12 11,$(shell python3.$(v) -c 'import sys; \
	sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && echo python3.$(v)))),python3.11)
VENV   := .venv
BIN    := $(VENV)/bin
# CPU build from this machine's disk. On a CUDA box pass the CUDA build and its index (README, "On the GPU box"),
# e.g. TORCH_SPEC='torch==2.9.1' TORCH_INDEX=https://download.pytorch.org/whl/cu130, then `make gpu`.
TORCH_SPEC  ?= torch==2.13.0
TORCH_INDEX ?=
STAMP  := $(VENV)/.sparkgrade-installed
# Holds the torch spec the venv was set up with: a different TORCH_SPEC or TORCH_INDEX rewrites it, and so
# re-runs setup (a stamp alone would keep a CPU torch after `make setup TORCH_SPEC=...`).
TORCH_STAMP := $(VENV)/.sparkgrade-torch
TORCH_WANT  := $(TORCH_SPEC) $(TORCH_INDEX)
# The GPU reference kernels `make gpu` builds from source (PyPI releases current on 2026-12-01).
MAMBA_SSM_VERSION     := 2.3.2.post1
CAUSAL_CONV1D_VERSION := 1.7.0

.PHONY: setup demo test test-fast lint bench gpu gpu-check clean FORCE

setup: $(STAMP)

$(TORCH_STAMP): FORCE
	@mkdir -p $(VENV)
	@if [ "$$(cat $@ 2>/dev/null)" != "$(TORCH_WANT)" ]; then echo "$(TORCH_WANT)" > $@; fi

$(STAMP): pyproject.toml scripts/system-deps.sh $(TORCH_STAMP)
	bash scripts/system-deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) \
		$(TORCH_SPEC)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev,postgres,distributed]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sparkgrade demo

# The suite runs in parallel worker processes (pytest-xdist). Many tests wait on subprocesses (a sandbox, a kernel,
# nbgrader, initdb), hence one worker more than two cores (3 against 2 not yet measured on an idle machine).
# `--dist loadgroup` keeps the tests of a module that builds one expensive course or sandbox (marked xdist_group in
# tests/conftest.py) on one worker, so that fixture is built once, not per worker.
# TEST_WORKERS=0 runs everything in this one process (a debugger, or a test that misbehaves only in parallel).
TEST_WORKERS ?= 3
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup

# Everything: what CI runs (.ci/run) and what to run before a merge.
test: $(STAMP)
	$(PYTEST)

# The inner loop: every test not marked slow (no whole notebooks, nbgrader cycles, batches, wheels).
test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

# mypy is strict on all of autograder/ and reference/ (pyproject.toml: the settings, and the libraries without
# types whose values are checked where they enter). Alembic's generated migration scripts are excluded there.
TYPED := autograder reference

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy $(TYPED)

bench: $(STAMP)
	$(BIN)/python benchmarks/scan_speed.py

# On a CUDA machine: causal-conv1d and mamba-ssm built from source for this GPU (scripts/build-gpu-kernels.sh).
gpu: $(STAMP)
	MAMBA_SSM_VERSION=$(MAMBA_SSM_VERSION) CAUSAL_CONV1D_VERSION=$(CAUSAL_CONV1D_VERSION) \
		PY=$(BIN)/python bash scripts/build-gpu-kernels.sh

# On a GPU box after `make gpu`: every GPU piece once, a JSON report (scripts/gpu_check.py). Exits 1 without a GPU.
gpu-check: $(STAMP)
	$(BIN)/python scripts/gpu_check.py --report gpu-check-report.json

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
