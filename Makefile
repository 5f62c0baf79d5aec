# `make demo` and the test targets each set up .venv/ first (idempotent; see tools/setup_env.sh).
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup test test-quick test-extras demo clean

setup:
	bash tools/setup_env.sh

# Everything: the tests marked slow (training, every config, deployment, fuzzing,
# library comparisons) too.
test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

# What a contributor runs while working: the tests not marked slow.
test-quick: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# Each extra installed alone into a fresh venv (uv, linked from its cache), and
# what it promises imported and built there.
test-extras: setup
	MMREGNET_TEST_EXTRAS=1 $(PY) -m pytest tests/test_extras.py $(PYTEST_ARGS)

demo: setup
	$(PY) tools/demo.py

clean:
	rm -rf $(VENV) work_dirs .pytest_cache
