# Grid Command Center: the two commands a new user needs are `make demo` and `make test`.
SHELL := /bin/bash
PY := .venv/bin/python
DATA_DIR ?= .data

.DEFAULT_GOAL := help
.PHONY: help demo test test-unit lint setup stop status clean-data screenshots

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/  make \1\t\2/' | expand -t 22

setup:  ## install what is missing (Debian packages, TimescaleDB, .venv)
	@bash scripts/install.sh

demo: setup  ## start the local stack (and everything on it); Ctrl-C stops it all; HISTORY_DAYS=30 adds history
	@$(PY) -m stack up --data-dir $(DATA_DIR) $(if $(HISTORY_DAYS),--history-days $(HISTORY_DAYS))

test: setup  ## the whole test suite: unit tests, then integration tests against real servers
	@$(PY) -m pytest $(PYTEST_ARGS)

test-unit: setup  ## only the fast unit tests (no servers; seconds)
	@$(PY) -m pytest tests/unit $(PYTEST_ARGS)

lint: setup  ## ruff, then the rooms' import contracts (import-linter); both configured in pyproject.toml
	@$(PY) -m ruff check .
	@.venv/bin/lint-imports --no-logo

stop:  ## stop a demo stack started in another terminal
	@$(PY) -m stack down --data-dir $(DATA_DIR)

status:  ## say which parts of a demo stack are running
	@$(PY) -m stack status --data-dir $(DATA_DIR)

clean-data: stop  ## forget the demo's data and generated credentials
	rm -rf $(DATA_DIR) /var/tmp/gridcc-*

screenshots:  ## screenshots of a running demo's screens into docs/screenshots/
	@$(PY) -m scripts.screenshots
