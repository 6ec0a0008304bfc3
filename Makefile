# The two front-door commands: `make demo` and `make test`. Both set up .venv on first use and are
# idempotent: the second run only re-installs when pyproject.toml changed.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
# CPU build from this machine's disk; on a CUDA box pass e.g. TORCH_SPEC='torch==2.9.1' (and `make gpu`).
TORCH_SPEC ?= torch==2.13.0
STAMP  := $(VENV)/.sparkgrade-installed

.PHONY: setup demo test lint bench gpu clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/system-deps.sh
	bash scripts/system-deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check $(TORCH_SPEC)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev,postgres,distributed]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sparkgrade demo

test: $(STAMP)
	$(BIN)/python -m pytest

# mypy is strict on autograder/ and reference/ (pyproject.toml). Until the modules other branches are rewriting have
# landed, the gate covers reference/ and the engine modules already clean, named here; `make types-all` shows the
# rest. The lead widens TYPED to autograder/ once it is clean.
TYPED := reference autograder/errors.py autograder/paths.py autograder/records.py autograder/db/engine.py \
	autograder/db/models.py autograder/feedback/render.py autograder/feedback/figures.py \
	autograder/course/gradebook.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy --follow-imports=silent $(TYPED)

types-all: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/scan_speed.py

# On a CUDA machine: the mamba-ssm kernels used as the GPU reference.
gpu: $(STAMP)
	$(BIN)/python -m pip install -e '.[gpu]'

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
