# The README's commands. Each target bootstraps .venv first (idempotent: a stamp file keyed on
# pyproject.toml makes a second run take a second).
VENV   ?= .venv
PY     := $(VENV)/bin/python
# CPU build of PyTorch; on a CUDA machine use e.g. `make TORCH_SPEC=torch demo`.
TORCH_SPEC ?= torch==2.13.0
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
CONFIG ?= configs/demo/lora_sft.yaml

.PHONY: setup demo test test-slow lint format bench clean

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

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf runs .pytest_cache .ruff_cache
