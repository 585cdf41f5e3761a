# The README's commands. Each target bootstraps .venv first (idempotent: a stamp file keyed on
# pyproject.toml makes a second run take a second).
VENV   ?= .venv
PY     := $(VENV)/bin/python
# CPU build of PyTorch; on a CUDA machine use e.g. `make TORCH_SPEC=torch demo`.
TORCH_SPEC ?= torch==2.13.0
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
CONFIG ?= configs/demo/lora_sft.yaml

.PHONY: setup demo test test-slow test-latest lint format bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

setup: $(STAMP)

## The whole pipeline on the embedded demo model and the sample data (CPU, minutes).
demo: setup
	$(VENV)/bin/medtune run $(CONFIG)

## The test suite (offline, a few minutes).
test: setup
	$(VENV)/bin/pytest -q

test-slow: setup
	$(VENV)/bin/pytest -q -m slow

## The suite on the newest releases the dependency ranges allow (before raising a cap such as peft's), in
## its own venv so .venv keeps the tested versions. torch stays at TORCH_SPEC (the CPU build here; override
## it as for every target). Downloads packages; runs anywhere, CI or not.
LATEST_VENV ?= .venv-latest

test-latest:
	@test -x $(LATEST_VENV)/bin/python || python3 -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(LATEST_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade \
		--upgrade-strategy eager "$(TORCH_SPEC)" -e ".[dev]"
	@$(LATEST_VENV)/bin/python -m pip list --format=freeze | grep -iE '^(torch|transformers|peft|trl|accelerate)=='
	$(LATEST_VENV)/bin/pytest -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Every bench/*.py except helpers (_common.py). A bench that does not apply on this machine (gpu_train.py
# without CUDA) prints "skipped: <why>" and exits with BENCH_SKIPPED (bench/_common.py SKIPPED, automake's
# 77): it is listed as skipped. Any other non-zero status is a failure: the rest still run, then make fails.
BENCHES ?= $(filter-out bench/_%,$(sort $(wildcard bench/*.py)))
BENCH_SKIPPED := 77

bench: setup
	@failed=; skipped=; \
	for b in $(BENCHES); do \
	  echo "== $$b"; $(PY) $$b; rc=$$?; \
	  if [ $$rc -eq $(BENCH_SKIPPED) ]; then skipped="$$skipped $$b"; \
	  elif [ $$rc -ne 0 ]; then echo "$$b failed (exit $$rc)"; failed="$$failed $$b"; fi; \
	done; \
	if [ -n "$$skipped" ]; then echo "skipped:$$skipped"; fi; \
	if [ -n "$$failed" ]; then echo "failed:$$failed"; exit 1; fi

clean:
	rm -rf runs .pytest_cache .ruff_cache
