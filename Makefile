# Verity: `make run` starts it, `make test` checks everything CI checks.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed
MUTATE_STAMP := $(VENV)/.mutate-installed

.PHONY: run test lint typecheck unit bench mutate clean lock

# Every install comes from a lock file with hashes (requirements-*.txt); pyproject.toml keeps
# the ranges a library user installs against. `make lock` re-resolves (docs/development.md).
$(STAMP): pyproject.toml requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

$(BENCH_STAMP): $(STAMP) requirements-bench.txt requirements-bench-opa.txt
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements-bench.txt
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps --ignore-requires-python \
		-r requirements-bench-opa.txt
	touch $(BENCH_STAMP)

$(MUTATE_STAMP): $(STAMP) requirements-mutate.txt
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements-mutate.txt
	touch $(MUTATE_STAMP)

# Re-resolve the locks (needs network to PyPI); review the diff, run `make test`, commit.
UV_VERSION := 0.13.10
lock:
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet uv==$(UV_VERSION)
	.lock-venv/bin/uv pip compile pyproject.toml requirements-build.in --extra dev \
		--generate-hashes --universal --python-version 3.11 --upgrade --quiet -o requirements-dev.txt
	.lock-venv/bin/uv pip compile pyproject.toml requirements-build.in -c requirements-dev.txt \
		--generate-hashes --universal --python-version 3.11 --quiet -o requirements.txt
	.lock-venv/bin/uv pip compile benchmarks/requirements.txt -c requirements-dev.txt \
		--generate-hashes --universal --python-version 3.11 --upgrade --quiet -o requirements-bench.txt
	.lock-venv/bin/uv pip compile tools/mutation/requirements.in -c requirements-dev.txt \
		--generate-hashes --universal --python-version 3.11 --quiet -o requirements-mutate.txt
	rm -rf .lock-venv

run: $(STAMP)
	$(BIN)/verity demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/ruff format --check src tests benchmarks tools

typecheck: $(STAMP)
	$(BIN)/mypy --strict src/verity

unit: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint typecheck unit

bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/policy_engine.py
	$(BIN)/python benchmarks/policy_compile.py
	$(BIN)/python benchmarks/identity.py
	$(BIN)/python benchmarks/decision_path.py
	$(BIN)/python benchmarks/gateway.py
	$(BIN)/python benchmarks/upstream_client.py
	$(BIN)/python benchmarks/audit.py
	$(BIN)/python benchmarks/audit_hot_path.py --commit 2000 --output benchmarks/results/audit_hot_path.json
	$(BIN)/python benchmarks/scale.py
	$(BIN)/python benchmarks/workers.py
	$(BIN)/python benchmarks/cel_libraries.py

# Mutation testing of the security core (tools/mutation/config.toml; docs/testing.md). Not part
# of `make test`: ~20 min for the default sample. MODULES="src/verity/x.py ..." narrows it,
# SAMPLE=0 runs every mutant of those modules.
MODULES ?=
SAMPLE ?=
mutate: $(MUTATE_STAMP)
	$(BIN)/python tools/mutation/run.py $(if $(SAMPLE),--sample $(SAMPLE)) $(MODULES)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
