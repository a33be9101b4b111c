# Two commands on a fresh machine with Python 3.11 and pip: `make run`, `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: run test test-unit bench clean

run: $(VENV)/.installed
	$(BIN)/fanout run

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

test-unit: $(VENV)/.installed-test
	$(BIN)/python -m pytest tests/unit

bench: $(VENV)/.installed-test
	$(BIN)/python -m benchmarks.foundation

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache
