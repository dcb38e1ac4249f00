# Every target creates or refreshes .venv itself: a fresh machine needs only python3.11 and make.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SETTINGS ?= settings.toml

.PHONY: demo test lint bench golden clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/publisher --settings $(SETTINGS) build

lint: $(STAMP)
	$(BIN)/ruff check publisher tests bench
	$(BIN)/ruff format --check publisher tests bench
	$(BIN)/mypy publisher

test: lint
	$(BIN)/python -m pytest

# Rewrite tests/golden/ from the current code; review `git diff tests/golden` before committing.
golden: $(STAMP)
	PUBLISHER_UPDATE_GOLDEN=1 $(BIN)/python -m pytest -q tests

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
