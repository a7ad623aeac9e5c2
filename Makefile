# callbridge: `make run` starts the daemon, `make test` runs the test suite.
# Both create .venv and install what is missing on first use; nothing but Python 3.11+ is needed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# `make run` installs what running needs; `make test` adds the test tools.
RUN_STAMP  := $(VENV)/.run-stamp
TEST_STAMP := $(VENV)/.test-stamp
# Test processes in parallel (pytest-xdist). Each test has its own databases, ports and daemon; a module's
# tests stay in one process, in order (--dist loadscope), as they share module fixtures. More workers than
# the machine's cores only adds contention. `make test TEST_WORKERS=0`: serial.
TEST_WORKERS ?= 2

.PHONY: run test test-fast lint bench clean chromium nginx slapd

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "callbridge needs Python 3.11 or newer")'
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
		echo "Python's venv module is missing. Install it, then run make again:"; \
		echo "    sudo apt install python3-venv      (Debian, Ubuntu)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(TEST_STAMP): pyproject.toml $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

run: $(RUN_STAMP)
	$(BIN)/callbridge run

test: $(TEST_STAMP) chromium nginx slapd
	$(BIN)/ruff check bridge connectors widget admin_module tests bench
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope --durations=25

# For development: everything but the tests that start `callbridge run` (marked `daemon`).
# CI runs `make test`, which runs them all.
test-fast: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope -m "not daemon" -p no:cacheprovider

# Browser tests drive Debian's Chromium (never a downloaded browser). Installed here when missing and we
# are root; otherwise those tests skip and say why.
chromium:
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "could not install chromium; browser tests will skip"

# The reverse-proxy test runs deploy/nginx/callbridge.conf in Debian's nginx: installed here like Chromium
# (RUNLEVEL=1: the package does not start the system's nginx). Without it that test skips and says why.
nginx:
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || [ "$$(id -u)" != 0 ] || \
		{ apt-get update -qq && RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; } || \
		echo "could not install nginx; the reverse-proxy test will skip"

# The directory tests start their own OpenLDAP slapd (Debian's package; own configuration, ports and data).
# Installed here like Chromium; the package's own system service is stopped and disabled. Without it those
# tests skip and say why (in CI they fail).
slapd:
	@[ -x /usr/sbin/slapd ] || [ "$$(id -u)" != 0 ] || \
		{ apt-get update -qq && RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slapd ldap-utils >/dev/null \
		  && { systemctl disable --now slapd >/dev/null 2>&1 || service slapd stop >/dev/null 2>&1 || true; }; } || \
		echo "could not install slapd; the directory tests will skip"

lint: $(TEST_STAMP)
	$(BIN)/ruff check bridge connectors widget admin_module tests bench
	$(BIN)/ruff format --check bridge connectors widget admin_module tests bench
	$(BIN)/lint-imports --no-cache

bench: $(TEST_STAMP)
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) var .pytest_cache
