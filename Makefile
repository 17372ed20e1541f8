# Two entry points: `make demo` and `make test`. Each creates .venv when missing and
# installs the package into it once (the stamp file is newer than setup.py afterwards).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.geoglacier-installed
# torch 2.14.1 / torchvision 0.29.1 are the releases our machines carry on disk; pin
# them first so no resolver ever reaches for a multi-GB newer build.
TORCH  := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test test-all lint bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): setup.py pyproject.toml | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check --no-cache-dir -q $(TORCH)
	$(BIN)/pip install --disable-pip-version-check --no-cache-dir -q -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/geoglacier demo --out demo-output --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ""

lint: $(STAMP)
	$(BIN)/pip install --disable-pip-version-check --no-cache-dir -q ruff
	$(BIN)/ruff check geoglacier cli tests benchmarks examples
	$(BIN)/ruff format --check geoglacier cli tests benchmarks examples

bench: $(STAMP)
	$(BIN)/pip install --disable-pip-version-check --no-cache-dir -q -e ".[test,bench]"
	$(BIN)/python benchmarks/bench_loader.py
	$(BIN)/python benchmarks/bench_inference.py
	$(BIN)/python benchmarks/bench_areas.py
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_wide.py
	$(BIN)/python benchmarks/bench_glaciers.py
	$(BIN)/python benchmarks/bench_labels.py
	$(BIN)/python benchmarks/bench_stack.py

# The docs site: docs/_build/html/index.html. Warnings are errors, so a broken
# cross-reference or a command that no longer exists fails the build.
docs: $(STAMP)
	$(BIN)/pip install --disable-pip-version-check --no-cache-dir -q -e ".[docs]"
	$(BIN)/sphinx-build -W --keep-going -n -b html docs docs/_build/html
	@echo "open docs/_build/html/index.html"

clean:
	rm -rf $(VENV) build *.egg-info demo-output .pytest_cache docs/_build
