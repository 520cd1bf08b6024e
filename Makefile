# CAVRA Connectors. `make test` is what CI runs; it installs what it needs itself.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# make demo PORT=8001 EMULATOR_PORT=0 DEMO_DIR=.cavra/demo2 runs a second demo beside the first
PORT ?= 8000
EMULATOR_PORT ?= 8900
DEMO_DIR ?= .cavra/demo

.PHONY: install test lint typecheck pytest demo emulate bench bench-quick clean mutation soak

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy bench

pytest: $(STAMP)
	$(BIN)/pytest

# bench-quick runs every benchmark contestant at tiny sizes so the harness cannot rot (it asserts no timing);
# pytest runs last so that its summary closes the output
test: lint typecheck bench-quick pytest

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

emulate: $(STAMP)
	$(BIN)/cavra emulate --write-config .cavra/emulators

demo: $(STAMP)
	$(BIN)/python -m cavra.demo --port $(PORT) --emulator-port $(EMULATOR_PORT) --dir $(DEMO_DIR)

# refresh the console screenshots in docs/img (headless Chromium at /usr/bin/chromium)
console-screenshots: $(STAMP)
	mkdir -p docs/img
	CAVRA_CONSOLE_SCREENSHOTS=docs/img $(BIN)/pytest tests/console/test_browser.py -q -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python -m bench.run

bench-quick: $(STAMP)
	$(BIN)/python -m bench.run --quick

# mutation testing of the pure core (classify, policy, redaction, chain) against the fast tests; slow (minutes),
# so not part of `make test`. Config: [tool.mutmut] in pyproject.toml; survivors explained in docs/mutation.md
# the long soak of the outbox on PostgreSQL: three worker processes drain 10,000 jobs, each delivered once
# (make test drains 3,000; about a minute here)
soak: $(STAMP)
	CAVRA_PG_JOBS=10000 $(BIN)/pytest tests/queue/test_pg_workers.py -q -p no:cacheprovider --timeout=0

mutation: $(STAMP)
	rm -rf mutants
	$(BIN)/mutmut run --max-children 2
	$(BIN)/mutmut results

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .cavra mutants
