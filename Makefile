# Two commands on a fresh machine with Python 3.11 and pip: `make run`, `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# pytest-xdist processes for `make test` and `make test-lowest`. The stack tiers' tests wait on their
# processes much of the time, so on two cores a third test process fills those waits; a fourth only made
# timing-sensitive fault scenarios late (docs/development.md). Tests sharing a module-scoped fixture run in
# one process (tests/support/scheduling.py).
TEST_PROCESSES ?= 3
# The suite's hundreds of processes import the same modules: they keep bytecode caches (in __pycache__,
# which git ignores) even where the environment sets PYTHONDONTWRITEBYTECODE, instead of compiling the
# project's modules and rewriting its tests again in each process.
SUITE := env -u PYTHONDONTWRITEBYTECODE
# pytest exits 5 when its selection collects nothing (a `-m` or `-k` in PYTEST_ARGS matching no test): no failure.
PYTEST_OK_IF_EMPTY = rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc
# The lowest Prefect fanout supports, read from pyproject's `prefect>=` bound: `make test-lowest` runs
# the unit and integration tiers on it, in a second virtualenv, so the range stays true.
PREFECT_LOWEST ?= $(shell sed -n 's/^ *"prefect>=\([0-9.]*\),.*/\1/p' pyproject.toml)
VENV_LOWEST ?= .venv-lowest
# Prefect before 3.7 does not cap FastAPI, yet its server fails on today's FastAPI and Starlette 1.x
# ("'PrefectRouter' object has no attribute 'routes'", seen with 3.1.15): the lowest is tested with the
# FastAPI of its time, as a project that runs that Prefect already has it.
LOWEST_CONSTRAINTS ?= "fastapi>=0.111,<0.116"
LINTED := src flows benchmarks tests docs

.PHONY: run test test-unit test-lowest test-postgres system-packages venv-lowest lint docs bench clean

# Silent (make echoes nothing), so stdout carries the run's JSON alone: `make run 2>/dev/null | python3 -m json.tool`.
run: $(VENV)/.installed
	@$(BIN)/fanout run

# Every tier, in TEST_PROCESSES processes, the longest tiers handed out first (tests/conftest.py).
test: $(VENV)/.installed-test system-packages
	$(SUITE) $(BIN)/python -m pytest -n $(TEST_PROCESSES) $(PYTEST_ARGS); $(PYTEST_OK_IF_EMPTY)

# In one process: the unit tests are in-process and short, so a second process would mostly collect them again.
test-unit: $(VENV)/.installed-test
	$(SUITE) $(BIN)/python -m pytest -n 0 tests/unit $(PYTEST_ARGS)

# The Debian packages the tiers drive: chromium (tests/ui, through Playwright), postgresql (tests marked
# `postgres`), curl (the README's examples). Installed with apt-get when missing and this user may (root, or
# sudo without a password); otherwise it says how, and the tests that need them are reported skipped.
DEBIAN_PACKAGES := chromium:/usr/bin/chromium postgresql:/usr/lib/postgresql/*/bin/pg_ctl curl:/usr/bin/curl
system-packages:
	@missing=""; for entry in $(DEBIAN_PACKAGES); do \
		ls $${entry#*:} >/dev/null 2>&1 || missing="$$missing $${entry%%:*}"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then apt=""; elif sudo -n true 2>/dev/null; then apt="sudo"; else \
		echo "make: Debian packages missing:$$missing; the tests that need them are skipped. Install them with: sudo apt-get install$$missing" >&2; \
		exit 0; \
	fi; \
	echo "make: installing Debian packages:$$missing" >&2; \
	$$apt apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$apt apt-get install -y -qq$$missing >/dev/null \
		|| echo "make: apt-get could not install$$missing; the tests that need them are skipped" >&2

test-lowest: venv-lowest
	$(VENV_LOWEST)/bin/python -c 'import prefect; print("prefect", prefect.__version__)'
	$(SUITE) $(VENV_LOWEST)/bin/python -m pytest -n $(TEST_PROCESSES) $(or $(PYTEST_ARGS),tests/unit tests/integration); $(PYTEST_OK_IF_EMPTY)

venv-lowest: $(VENV_LOWEST)/.installed-$(PREFECT_LOWEST)

# The end-to-end scenarios again with the Prefect server on a private PostgreSQL cluster (the production backend).
POSTGRES_SCENARIOS ?= tests/e2e/test_webhook_e2e.py::test_seed_scenario_post_202_then_poll_to_200_with_five_results \
	tests/faults/test_host_crash.py::test_kill_nine_of_worker_and_run_completes_on_its_own
test-postgres: $(VENV)/.installed-test
	$(SUITE) FANOUT_E2E_DATABASE=postgres $(BIN)/python -m pytest $(POSTGRES_SCENARIOS)

# ruff (lint and format), mypy --strict on the package and the flows, import-linter's layer contract (all in pyproject.toml).
lint: $(VENV)/.installed-lint
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy --strict src/fanout flows
	$(BIN)/lint-imports

# The documentation site in site/: warnings (a broken link, a page missing from the nav) fail the build.
# The reference pages are generated from the code as it builds (docs/reference_hooks.py).
docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

bench: $(VENV)/.installed-test
	$(BIN)/python -m benchmarks.scale --quick

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip >&2
	@$(BIN)/python -m pip install --quiet -e . >&2
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[test,dask,postgres]"
	touch $@

# mypy checks src/fanout/engine/runners.py, which imports prefect-dask: lint installs the dask extra too.
$(VENV)/.installed-lint: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[lint,dask]"
	touch $@

$(VENV)/.installed-docs: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	touch $@

$(VENV_LOWEST)/.installed-$(PREFECT_LOWEST): pyproject.toml
	test -x $(VENV_LOWEST)/bin/python || $(PYTHON) -m venv $(VENV_LOWEST)
	$(VENV_LOWEST)/bin/python -m pip install --quiet --upgrade pip
	$(VENV_LOWEST)/bin/python -m pip install --quiet -e ".[test,dask]" "prefect==$(PREFECT_LOWEST)" $(LOWEST_CONSTRAINTS)
	touch $@

clean:
	rm -rf $(VENV) $(VENV_LOWEST) site .pytest_cache .mypy_cache .ruff_cache
