# Two commands from a fresh clone: `make demo` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

NODE_DIR := tests/conformance/node
NODE_STAMP := $(NODE_DIR)/node_modules/.package-lock.json

.PHONY: install demo test test-unit test-e2e test-conformance conformance-deps bench bench-deps emulator clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required (found %s)" % sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

## The end-to-end demo on a local emulator (see README).
demo: $(STAMP)
	$(PY) -m demo

## The whole test suite: unit, end-to-end, reliability and conformance (third-party clients).
test: $(STAMP) conformance-deps
	$(PY) -m pytest -q $(PYTEST_ARGS)

## Only the conformance part: the emulator driven by clients this project did not write (Node.js SDKs, mosquitto).
test-conformance: $(STAMP) conformance-deps
	$(PY) -m pytest -q tests/conformance $(PYTEST_ARGS)

## What the conformance tests drive: Microsoft's Node.js SDKs (pinned, into $(NODE_DIR)/node_modules) and the
## mosquitto command-line clients. Where one cannot be had this says so and the tests that need it skip.
conformance-deps: $(NODE_STAMP)
	@command -v mosquitto_rr >/dev/null || $(call apt_install,mosquitto-clients) || \
	  echo "note: mosquitto-clients is not installed (its conformance tests will skip): install it with your package manager"

$(NODE_STAMP): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	@command -v npm >/dev/null || $(call apt_install,nodejs npm) || true
	@if command -v npm >/dev/null; then \
	  cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error || \
	  echo "note: npm ci failed (offline?): the Node.js conformance tests will skip"; \
	else echo "note: Node.js/npm is not installed (its conformance tests will skip): install nodejs and npm"; fi

# apt-get install as root (or with password-less sudo), refreshing the package lists when a package is unknown.
apt_install = { command -v apt-get >/dev/null && \
  { if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO="sudo -n"; fi; \
    $$SUDO apt-get install -y -q $(1) >/dev/null 2>&1 || \
    { $$SUDO apt-get update -q >/dev/null 2>&1 && $$SUDO apt-get install -y -q $(1) >/dev/null; }; }; }

## The two halves of `make test`: unit tests (no sockets) and everything else (end-to-end, reliability,
## conformance, the pytest plugin, the README's own commands).
test-unit: $(STAMP)
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

test-e2e: $(STAMP) conformance-deps
	$(PY) -m pytest -q tests --ignore=tests/unit $(PYTEST_ARGS)

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
	rm -rf $(VENV) .pytest_cache build *.egg-info $(NODE_DIR)/node_modules
