# Every target creates or refreshes .venv itself: a fresh machine needs only python3.11 and make.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SETTINGS ?= settings.toml

.PHONY: demo test lint bench golden clean browser postgres spamassassin java

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

test: lint browser postgres spamassassin java
	$(BIN)/python -m pytest

# Rewrite tests/golden/ from the current code; review `git diff tests/golden` before committing.
golden: $(STAMP)
	PUBLISHER_UPDATE_GOLDEN=1 $(BIN)/python -m pytest -q tests

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

# $(call apt_ensure,TARGET,CHECK,PACKAGES,WHAT,TESTS): when the shell test CHECK fails, install
# Debian's PACKAGES; without root or apt, say why and go on: TESTS then skip, naming it.
define apt_ensure
	@if $(2); then :; \
	elif [ "$$(id -u)" != 0 ]; then \
		echo "$(1): $(4) is missing and installing it needs root (apt-get install $(3)); $(5) will be skipped"; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
		echo "$(1): $(4) is missing and there is no apt-get here; $(5) will be skipped"; \
	else \
		echo "$(1): installing Debian's $(3) for $(5)"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(3) >/dev/null) \
			|| echo "$(1): apt-get could not install $(3); $(5) will be skipped"; \
	fi
endef

# The browser tests drive Debian's chromium, never a downloaded one.
CHROMIUM := /usr/bin/chromium
browser:
	$(call apt_ensure,browser,[ -x $(CHROMIUM) ],chromium fonts-dejavu-core,$(CHROMIUM),the browser tests)

# The store tests also run on PostgreSQL, on a throwaway server they start themselves from
# Debian's programs.
postgres:
	$(call apt_ensure,postgres,ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1,postgresql,PostgreSQL,the PostgreSQL store tests)

# Every kind of mail we send is scored by Debian's SpamAssassin, with its local rules only.
spamassassin:
	$(call apt_ensure,spamassassin,command -v spamassassin >/dev/null 2>&1,spamassassin,SpamAssassin,the spam-filter tests)

# The W3C Nu HTML Checker (vnu.jar, from the dev extras) checks every page; it runs on java.
java:
	$(call apt_ensure,java,command -v java >/dev/null 2>&1,default-jre-headless,java,the HTML checker tests)
