# Grid Command Center: the two commands a new user needs are `make demo` and `make test`.
SHELL := /bin/bash
PY := .venv/bin/python
DATA_DIR ?= .data

.PHONY: demo test setup stop status clean-data screenshots

setup:  ## install what is missing (Debian packages, TimescaleDB, .venv)
	@bash scripts/install.sh

demo: setup  ## start the local stack (and everything on it); Ctrl-C stops it all
	@$(PY) -m scripts.stack up --data-dir $(DATA_DIR)

test: setup  ## the whole test suite against real servers
	@$(PY) -m pytest $(PYTEST_ARGS)

stop:  ## stop a demo stack started in another terminal
	@$(PY) -m scripts.stack down --data-dir $(DATA_DIR)

status:
	@$(PY) -m scripts.stack status --data-dir $(DATA_DIR)

clean-data: stop  ## forget the demo's data and generated credentials
	rm -rf $(DATA_DIR) /var/tmp/gridcc-*

screenshots:  ## screenshots of a running demo's screens into docs/screenshots/
	@$(PY) -m scripts.screenshots
