# `make demo` and `make test` each set up .venv/ first (idempotent; see tools/setup_env.sh).
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup test demo clean

setup:
	bash tools/setup_env.sh

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

demo: setup
	$(PY) tools/demo.py

clean:
	rm -rf $(VENV) work_dirs .pytest_cache
