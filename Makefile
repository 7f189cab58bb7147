# Verity: `make run` starts it, `make test` checks everything CI checks.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: run test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(BENCH_STAMP): $(STAMP) benchmarks/requirements.txt
	$(BIN)/python -m pip install --quiet -r benchmarks/requirements.txt
	$(BIN)/python -m pip install --quiet --ignore-requires-python opa-golib-python-bindings==0.4.4
	touch $(BENCH_STAMP)

run: $(STAMP)
	$(BIN)/verity demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy --strict src/verity

unit: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint typecheck unit

bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/policy_engine.py
	$(BIN)/python benchmarks/identity.py
	$(BIN)/python benchmarks/gateway.py
	$(BIN)/python benchmarks/audit.py
	$(BIN)/python benchmarks/scale.py
	$(BIN)/python benchmarks/cel_libraries.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
