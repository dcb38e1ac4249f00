# Every target creates or refreshes .venv itself: a fresh machine needs only python3.11 and make.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SETTINGS ?= settings.toml

.PHONY: demo test lint bench golden clean browser postgres

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

test: lint browser postgres
	$(BIN)/python -m pytest

# Rewrite tests/golden/ from the current code; review `git diff tests/golden` before committing.
golden: $(STAMP)
	PUBLISHER_UPDATE_GOLDEN=1 $(BIN)/python -m pytest -q tests

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

# The browser tests drive Debian's chromium (never a downloaded one). Install it when missing;
# without apt or root, say why and go on: those tests then skip, naming what is missing.
CHROMIUM := /usr/bin/chromium
browser:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" != 0 ]; then \
		echo "browser: $(CHROMIUM) is missing and installing it needs root (apt-get install chromium); the browser tests will be skipped"; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
		echo "browser: $(CHROMIUM) is missing and there is no apt-get here; the browser tests will be skipped"; \
	else \
		echo "browser: installing Debian's chromium for the browser tests"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null) \
			|| echo "browser: apt-get could not install chromium; the browser tests will be skipped"; \
	fi

# The store tests also run on PostgreSQL, on a throwaway server they start themselves from
# Debian's programs. Install them when missing, as for chromium above.
postgres:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" != 0 ]; then \
		echo "postgres: PostgreSQL is missing and installing it needs root (apt-get install postgresql); the PostgreSQL store tests will be skipped"; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
		echo "postgres: PostgreSQL is missing and there is no apt-get here; the PostgreSQL store tests will be skipped"; \
	else \
		echo "postgres: installing Debian's PostgreSQL for the store tests"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null) \
			|| echo "postgres: apt-get could not install PostgreSQL; the PostgreSQL store tests will be skipped"; \
	fi
