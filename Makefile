# Two commands on a fresh machine with Python 3.11 and pip: `make run`, `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: run test test-multiworker test-unit test-postgres bench clean

run: $(VENV)/.installed
	$(BIN)/fanout run

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

test-multiworker: $(VENV)/.installed-test
	$(BIN)/python -m pytest -m multiworker

test-unit: $(VENV)/.installed-test
	$(BIN)/python -m pytest tests/unit

# The end-to-end scenarios again with the Prefect server on a private PostgreSQL cluster (the production backend).
POSTGRES_SCENARIOS ?= tests/e2e/test_webhook_e2e.py::test_seed_scenario_post_202_then_poll_to_200_with_five_results \
	tests/faults/test_host_crash.py::test_kill_nine_of_worker_and_run_completes_on_its_own
test-postgres: $(VENV)/.installed-test
	FANOUT_E2E_DATABASE=postgres $(BIN)/python -m pytest $(POSTGRES_SCENARIOS)

bench: $(VENV)/.installed-test
	$(BIN)/python -m benchmarks.scale --quick

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[test,dask]"
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache
