# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch first, pinned: on CPU machines this is the CPU wheel, so pip never pulls GBs of CUDA wheels.
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.emtui-installed

.PHONY: run test venv clean bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[test,figures]'
	touch $(STAMP)

venv: $(STAMP)

# the offline demo (emtui demo): its own database here, demo.db (+ demo.db.runs/), never your research db;
# `$(BIN)/emtui --db FILE` opens your own
DEMO_DB ?= demo.db

run: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/emtui demo --db $(DEMO_DB)

# the suite's processes (pytest-xdist): 2 fits CI's 2 cores; `make test PYTEST_WORKERS=0` runs it in one
PYTEST_WORKERS ?= 2

# lint and types first (seconds), then the suite (minutes): the first that fails stops it
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -q -n $(PYTEST_WORKERS)

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache
