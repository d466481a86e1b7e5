# TaskService — every target sets up what it needs; a fresh clone needs only `make run` or `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
STAMP := $(VENV)/.installed

.PHONY: install run test lint check fmt proto proto-check bench soak clean web lock lock-runtime

# The board (web/) is built when Node.js and npm are present; without them the server says so at /.
WEB_BUILD := web/dist/index.html
WEB_SOURCES := $(wildcard web/src/*.ts web/src/*.css web/compat/*) web/index.html web/package.json web/package-lock.json \
	web/vite.config.ts web/vite.compat.config.ts web/tsconfig.json proto/taskservice/task_service.proto

install: $(STAMP) $(WEB_BUILD)

$(STAMP): pyproject.toml requirements.lock scripts/install-h2load.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(UV) || $(BIN)/pip install -q uv==0.13.8
	$(UV) pip sync -q --python $(BIN)/python requirements.lock
	$(UV) pip install -q --python $(BIN)/python --no-deps -e .
	@bash scripts/install-h2load.sh
	@touch $(STAMP)
	@echo "installed: $(BIN)/taskservice $(BIN)/taskctl"

$(WEB_BUILD): $(STAMP) $(WEB_SOURCES)
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory web; \
	else echo "npm not found: the board is not built (the server explains this at /)"; fi

web: $(STAMP)
	cd web && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build

run: install
	$(BIN)/taskservice serve $(ARGS)

test: install proto-check
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# ruff, the formatter's check and `mypy --strict` over src and tests (pyproject.toml [tool.mypy]).
lint: install
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts
	$(BIN)/mypy

# What CI runs (.ci/run): every quality gate, then the tests.
check: lint test

fmt: install
	$(BIN)/ruff format src tests scripts
	$(BIN)/ruff check --fix src tests scripts

proto: install
	$(BIN)/python scripts/gen_proto.py

proto-check: install
	$(BIN)/python scripts/gen_proto.py --check

# The full benchmark (see docs/performance.md); `make bench ARGS=--quick` for the short one.
bench: install
	$(BIN)/taskservice bench $(ARGS)

# A long mixed-load run with dropping watchers and faults (docs/operations.md, "Soak"):
# `make soak ARGS="--store postgres --private-postgres"`; CI runs `--duration 60s` (tests/test_soak.py).
soak: install
	$(BIN)/taskservice soak $(ARGS)

# requirements.lock: everything for development and CI; requirements-runtime.lock: only what the
# server needs (no extras), pinned to the same versions, for the Docker image.
lock:
	$(UV) pip compile -q pyproject.toml --extra dev --extra otel -o requirements.lock
	$(MAKE) --no-print-directory lock-runtime

lock-runtime:
	$(UV) pip compile -q pyproject.toml --constraint requirements.lock -o requirements-runtime.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache web/node_modules web/dist web/dist-compat web/src/gen
