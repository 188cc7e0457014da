# A new user needs two commands: `make serve` and `make test`. Every other
# target is one step of those two that can also be run alone.
#
# Tools are called by their .venv/bin path rather than by activating the
# virtualenv, so each recipe works the same from any shell and in CI.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
# `make test` runs its steps in the order written: gen rewrites files that
# lint reads, and pytest should only start once the services are up.
.NOTPARALLEL:
.DELETE_ON_ERROR:
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

VENV := .venv
BIN := $(VENV)/bin
# Rebuilt whenever either project's dependencies change.
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: help install serve ts-deps gen check-gen lint services test unit ts-test

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) \
		| awk -F':.*## ' '{ printf "  make %-10s %s\n", $$1, $$2 }'

install: $(STAMP) ## Create .venv and install the service, its client and the dev tools

# pip -qq: errors still show; warnings about the machine's pip index settings
# (one per package on some machines) do not.
$(STAMP): pyproject.toml clients/python/pyproject.toml
	@echo "==> install: $(VENV) (pip install -e ./clients/python -e '.[dev]')"
	@[ -x $(BIN)/python ] || python3 -m venv $(VENV)
	@$(BIN)/pip install -qq --disable-pip-version-check -e ./clients/python -e '.[dev]'
	@touch $@

serve: install ## Run the service on its embedded default (SQLite + in-process Redis); ARGS=... adds flags
	@echo "==> serve: $(strip seat-inventory serve $(ARGS))"
	@$(BIN)/seat-inventory serve $(ARGS)

# The TypeScript client (clients/typescript) needs Node.js 20+ and npm: its
# lock file pins protoc-gen-es, which `make gen` runs, and the libraries the
# Node test uses. node_modules is reinstalled whenever the lock file changes.
# Without node, a developer is told and the TypeScript steps are skipped; CI
# (CI=true) fails instead, so that nothing is silently left unchecked.
TS := clients/typescript
TS_STAMP := $(TS)/node_modules/.package-lock.json
NO_NODE_MSG := Node.js 20+ and npm are needed for clients/typescript (install them, e.g. apt-get install nodejs npm)
have_node = { command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; }

ts-deps: ## Install clients/typescript/node_modules from its lock file (npm ci)
	@if ! $(have_node); then \
		if [ "$${CI:-}" = true ]; then echo "ts-deps: $(NO_NODE_MSG)" >&2; exit 1; fi; \
		echo "ts-deps: skipped: $(NO_NODE_MSG)" >&2; \
	elif [ ! -f $(TS_STAMP) ] || [ $(TS)/package-lock.json -nt $(TS_STAMP) ]; then \
		echo "==> ts-deps: npm ci --prefix $(TS)"; \
		npm ci --prefix $(TS) --no-audit --no-fund --loglevel=error; \
	fi

# buf runs the generators named in buf.gen.yaml from PATH, so the venv's
# python, grpcio-tools and mypy-protobuf must come first; protoc-gen-es runs
# from clients/typescript/node_modules. mypy-protobuf reports every file it
# writes; those lines are dropped, anything else is shown.
# Generated files are deleted first so that the output of a removed .proto
# shows up in check-gen instead of lingering. (`buf generate --clean` would
# also delete the hand-written __init__.py and py.typed beside them.)
# Without node (outside CI, see ts-deps) only the Python plugins run: the
# template is cut at the TypeScript marker in buf.gen.yaml.
GENERATED := \( -name '*_pb2.py' -o -name '*_pb2.pyi' -o -name '*_pb2_grpc.py' -o -name '*_pb2_grpc.pyi' \)
PY_TEMPLATE := .buf.gen.python-only.yaml
# What check-gen compares: every generated file, and nothing hand-written
# beside it (the typed client in clients/python/src/seatinventory/client).
GENERATED_PATHS := ':(glob)clients/python/src/**/*_pb2*.py*' $(TS)/src/gen

gen: install ts-deps ## Regenerate clients/python/src and clients/typescript/src/gen from protos/
	@find clients/python/src -type f $(GENERATED) -delete
	@if $(have_node); then \
		echo "==> gen: buf generate (protos/ -> clients/python/src, $(TS)/src/gen)"; \
		find $(TS)/src/gen -type f -name '*_pb.ts' -delete 2>/dev/null || true; \
		PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/buf generate 2>&1 | { grep -v '^Writing mypy to ' || true; }; \
	else \
		echo "==> gen: buf generate (protos/ -> clients/python/src; TypeScript skipped: no node)"; \
		sed '/TypeScript plugin: everything below/,$$d' buf.gen.yaml > $(PY_TEMPLATE); \
		trap 'rm -f $(PY_TEMPLATE)' EXIT; \
		PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/buf generate --template $(PY_TEMPLATE) 2>&1 \
			| { grep -v '^Writing mypy to ' || true; }; \
	fi

check-gen: gen ## Fail if the committed generated code differs from a fresh regeneration
	@echo "==> check-gen: generated code in clients/ matches what git has committed"
	@changes="$$(git status --porcelain --untracked-files=all -- $(GENERATED_PATHS))"; \
	if [ -n "$$changes" ]; then \
		echo "check-gen: regenerating from protos/ changed these files:" >&2; \
		echo "$$changes" >&2; \
		echo "check-gen: generated code is never edited by hand; run 'make gen' and commit the result." >&2; \
		exit 1; \
	fi

# Every check runs even after one fails, so one CI run reports all problems.
lint: install ## buf lint and format, ruff check and format, mypy --strict
	@failed=""; \
	echo "==> lint: buf lint"; \
	$(BIN)/buf lint || failed="$$failed 'buf lint'"; \
	echo "==> lint: buf format --diff --exit-code"; \
	$(BIN)/buf format --diff --exit-code || failed="$$failed 'buf format'"; \
	echo "==> lint: ruff check ."; \
	$(BIN)/ruff check --quiet . || failed="$$failed 'ruff check'"; \
	echo "==> lint: ruff format --check ."; \
	$(BIN)/ruff format --check --quiet . || failed="$$failed 'ruff format'"; \
	echo "==> lint: mypy"; \
	$(BIN)/mypy || failed="$$failed mypy"; \
	if [ -n "$$failed" ]; then echo "lint: failed:$$failed" >&2; exit 1; fi

services: ## Start the local Redis and PostgreSQL if they are installed but not running
	@echo "==> services: Redis and PostgreSQL on 127.0.0.1"
	@bash scripts/ensure-services.sh

test: install services check-gen lint ## Everything CI runs: services, check-gen, lint, the whole test suite, ts-test
	@echo "==> test: pytest (every test, all markers)"
	@$(BIN)/pytest
	@$(MAKE) ts-test

# The Node test starts `.venv/bin/seat-inventory serve` (embedded default) itself.
ts-test: install ts-deps ## Type-check clients/typescript and run its Node test against a real server
	@if $(have_node); then \
		echo "==> ts-test: tsc --noEmit, node --test ($(TS)/test)"; \
		npm test --prefix $(TS) --silent; \
	fi

unit: install ## Only the unit tests: fast, no servers needed
	@echo "==> unit: pytest tests/unit"
	@$(BIN)/pytest tests/unit

reliability: install services ## The fault, race and bad-input suite with its report (RELIABILITY_SCALE=3 for a longer run)
	@echo "==> reliability: pytest -m reliability"
	@$(BIN)/pytest -m reliability $(ARGS)

.PHONY: bench  # also the name of a directory
bench: install services ## The side-by-side benchmark (~8 min; ARGS=--quick ~2 min), writing bench/RESULTS.md
	@echo "==> bench: bench/run.py $(ARGS)"
	@$(BIN)/python bench/run.py --out bench/RESULTS.md --json bench/results.json $(ARGS)
