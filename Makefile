# streamloop: `make run` starts everything locally, `make test` runs the whole suite.
# Each target installs what it needs into .venv on first use (Python 3.11+ required).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint format bench soak up clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "streamloop needs Python 3.11 or newer (set PYTHON=python3.12 for example)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m tools.run_local

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared services tools

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

$(VENV)/.installed-bench: $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@touch $@

bench: $(VENV)/.installed-bench
	$(BIN)/python -m tools.bench

# 5,000 events/s through every service for 10 minutes; records section soak of
# docs/benchmarks.md (not run in CI). Options: make soak SOAK_ARGS='--duration-s 60 --no-write'
soak: $(STAMP)
	$(BIN)/python -m tools.soak $(SOAK_ARGS)

# Redis and every service in Docker (docker-compose.yml); needs Docker, not .venv.
up:
	docker compose up --build

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
