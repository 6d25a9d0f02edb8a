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
