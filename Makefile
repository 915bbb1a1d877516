# One command for every check: `make test`. `make demo` runs the reference saga on a real broker.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install lint typecheck docs test test-unreliable test-unit test-integration demo kafka kafka-stop bench bench-smoke clean simulate

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: install
	$(BIN)/ruff check sagas tests processors benchmarks
	$(BIN)/ruff format --check sagas tests processors benchmarks

typecheck: install
	$(BIN)/mypy

# The documentation site (mkdocs.yml, docs/): --strict fails on a broken link or a bad reference.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The broker is started by tests/conftest.py (KAFKA_BOOTSTRAP_SERVERS, testcontainers, or local jars).
# The schema check: every schema in schemas/ is FULL_TRANSITIVE compatible with schemas/history.
test: lint typecheck docs
	$(BIN)/python -m sagas.serde.compat
	$(BIN)/pytest -m "not unreliable"

# Tests of known open defects (see the unreliable marker in pyproject.toml and the README).
test-unreliable: install
	$(BIN)/pytest -m unreliable

test-unit: install
	$(BIN)/pytest tests/unit

test-integration: install
	$(BIN)/pytest tests/integration

demo: install
	$(BIN)/python -m processors.demo

# The world simulation at full size (tests/sim): random definitions against random services,
# every saga's books checked at the end. Default 1,000,000 sagas over every core; ARGS passes
# through, e.g. make simulate ARGS="--sagas 20000 --seed 7 --workers 2".
simulate: install
	$(BIN)/python -m tests.sim.run --sagas 1000000 --workers $$(nproc 2>/dev/null || echo 2) $(ARGS)

# Figures are printed, never asserted: see docs/benchmarks.md. A broker of its own unless
# KAFKA_BOOTSTRAP_SERVERS is set; Temporal and DBOS come with the bench extra, in a virtualenv
# of their own: dbos needs croniter>=6.2.4 and faust-streaming's mode-streaming (in dev) <6.
BENCH_VENV ?= .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed-stamp

$(BENCH_STAMP): pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python -m benchmarks.run $(ARGS)

bench-smoke: install
	$(BIN)/python -m benchmarks.run --smoke

kafka: install
	$(BIN)/sagas dev kafka

kafka-stop: install
	$(BIN)/sagas dev kafka stop

clean:
	rm -rf $(VENV) $(BENCH_VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info

# The chaos scenario at full size (tests/chaos/scenario.py): worker kills, a broker restart, then
# its invariants and figures. Sizes: CHAOS_SAGAS, CHAOS_DURATION... or ARGS="--sagas 500".
.PHONY: chaos
chaos: install
	$(BIN)/python -m benchmarks.chaos $(ARGS)
