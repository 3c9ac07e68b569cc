# Two commands from a fresh clone: `make demo` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test test-unit test-e2e bench bench-deps emulator clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required (found %s)" % sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

## The end-to-end demo on a local emulator (see README).
demo: $(STAMP)
	$(PY) -m service demo

## The whole test suite: unit and end-to-end.
test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

test-e2e: $(STAMP)
	$(PY) -m pytest -q tests/e2e $(PYTEST_ARGS)

## Benchmarks (bounded; results in bench/results/latest.{json,md}); `make bench-deps` installs mosquitto.
bench: $(STAMP)
	$(PY) -m bench

## mosquitto, the reference broker `make bench` compares against (the bench skips it with a note if absent).
bench-deps:
	@command -v mosquitto >/dev/null || test -x /usr/sbin/mosquitto || \
	  { command -v apt-get >/dev/null && { [ "$$(id -u)" = 0 ] && apt-get install -y mosquitto || sudo apt-get install -y mosquitto; }; } || \
	  { command -v brew >/dev/null && brew install mosquitto; } || \
	  echo "install mosquitto with your package manager"

emulator: $(STAMP)
	$(PY) -m emulator

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
