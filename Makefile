# The two commands of the README: `make serve` and `make test`. Everything else is their plumbing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: serve test lint typecheck unit chromium

serve: $(VENV)/.installed
	$(BIN)/frontdesk serve

test: $(VENV)/.installed-test chromium lint typecheck unit

# Browser tests drive the distribution's Chromium, never a downloaded browser.
chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

lint: $(VENV)/.installed-test
	$(BIN)/ruff check frontdesk tests
	$(BIN)/ruff format --check frontdesk tests

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

unit: $(VENV)/.installed-test
	$(BIN)/pytest

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

# Benchmarks, separate from the tests: every scenario on loopback, each bounded in time; prints
# a table and writes bench/results/latest.json (docs/benchmarks.md). wrk comes from apt when
# missing; without it the harness falls back to its own Python load generator.
.PHONY: bench
bench: $(VENV)/.installed
	@command -v wrk >/dev/null 2>&1 || { apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk; } || \
		echo "wrk unavailable: using the Python load generator"
	$(BIN)/python -m bench.run

# The long fault-injection run (tests/reliability, docs/reliability.md): on a fresh PostgreSQL
# database when none is configured and one answers on 127.0.0.1:5432; prints the table.
.PHONY: faults
faults: $(VENV)/.installed-test
	@set -eu; url="$${FRONTDESK_TEST_DATABASE_URL:-}"; created=""; \
	pg() { psql -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 -qc "$$1"; }; \
	if [ -z "$$url" ] && pg_isready -h 127.0.0.1 -p 5432 -q; then \
		created="frontdesk_faults_$$$$"; pg "CREATE DATABASE $$created"; \
		url="postgresql://postgres@127.0.0.1:5432/$$created"; \
	fi; \
	trap '[ -z "$$created" ] || pg "DROP DATABASE IF EXISTS $$created WITH (FORCE)"' EXIT; \
	FRONTDESK_TEST_DATABASE_URL="$$url" FRONTDESK_RELIABILITY=long \
		$(BIN)/pytest tests/reliability -p no:cacheprovider -q -rxX
