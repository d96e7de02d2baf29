# Two commands set everything up: `make devnet` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: devnet test lint unit bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

devnet: $(STAMP)
	$(BIN)/deoss devnet --dir .devnet

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: $(TEST_STAMP)
	$(BIN)/pytest -q

test: lint unit

bench: $(TEST_STAMP)
	$(BIN)/python bench/bench_chain.py
	$(BIN)/python bench/bench_idle.py --quick
	$(BIN)/python bench/bench_miner.py
	$(BIN)/python bench/bench_gateway.py

clean:
	rm -rf $(VENV) .devnet .pytest_cache .mypy_cache .ruff_cache
