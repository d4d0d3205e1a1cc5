# gpuwarden: `make demo` and `make test` work on a fresh Debian machine with Python >= 3.11.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEBIAN_PACKAGES := prometheus prometheus-alertmanager prometheus-pushgateway slurm-wlm munge postgresql victoria-metrics
# Binaries that prove each Debian package is installed.
DEBIAN_BINARIES := /usr/bin/prometheus /usr/bin/victoria-metrics /usr/bin/promtool /usr/bin/prometheus-alertmanager /usr/bin/prometheus-pushgateway /usr/sbin/slurmctld /usr/sbin/munged /usr/lib/postgresql/15/bin/initdb

# Where PYTHONDONTWRITEBYTECODE is set (as on the development machine) Python never writes bytecode, so every
# process the tests start compiled each module it imports again, and each pytest worker rewrote every test
# module's assertions again (33 s of CPU to collect the suite, against 14 s with pytest's cache). Here each
# module is compiled once, by its first import, and only the modules something imports: pip no longer compiles
# the whole environment at install (53 of its 82 s of CPU, 2026-12-04).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: venv deps lint test test-fast demo bench clean

# Debian's python3 has no ensurepip without its python3-venv package: `python3 -m venv` then fails after
# creating half an environment, with a message about ensurepip. Said first, with the fix.
$(BIN)/gpuwarden: pyproject.toml
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { echo "error: $(PYTHON) cannot create a virtual environment (no ensurepip module): on Debian or Ubuntu install it with 'sudo apt-get install python3-venv' (or python3.X-venv for your version), then run make again" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --no-compile -e '.[dev]'
	touch $@

venv: $(BIN)/gpuwarden

# Debian packages for the integration tests (real Prometheus, Alertmanager, Pushgateway, Slurm).
deps:
	@missing=0; for b in $(DEBIAN_BINARIES); do [ -x $$b ] || missing=1; done; \
	if [ $$missing = 1 ]; then \
		echo "installing Debian packages: $(DEBIAN_PACKAGES)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(DEBIAN_PACKAGES) >/dev/null; \
	fi

lint: venv
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The suite runs on TEST_WORKERS processes (pytest-xdist's -n), a test module per worker at a time (module
# fixtures start their servers once), the slowest modules first (tests/conftest.py); `make test
# TEST_WORKERS=0` runs it in one process. The default is one worker per CPU and one more: a fifth of the
# suite's time was waiting on the real servers it starts (2026-12-04, 2 cores: 31.9 min of CPU in 23 min
# with two workers), and a third worker runs while the other two wait.
TEST_WORKERS ?= $(shell $(PYTHON) -c 'import os; print(len(os.sched_getaffinity(0)) + 1)')

# mypy takes one core for most of a minute: a first collection of the suite runs beside it on the other, and
# compiles what the tests import and writes pytest's rewritten test modules before the workers start (each
# worker collects the whole suite). Its errors, if any, are the suite's own and show again in the real run.
test: deps venv
	@$(BIN)/pytest -p no:cacheprovider --collect-only -q >/dev/null 2>&1 & collecting=$$!; \
	$(MAKE) --no-print-directory lint; linted=$$?; wait $$collecting; exit $$linted
	$(BIN)/pytest -p no:cacheprovider -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

test-fast: venv
	$(BIN)/pytest -p no:cacheprovider -m "not integration"

demo: venv
	$(BIN)/gpuwarden demo

bench: venv
	@for b in benchmarks/bench_*.py; do $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
