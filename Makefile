# Two commands do all the set-up on a fresh machine:
#   make demo   the platform end to end on the embedded defaults
#   make test   the whole test suite (lint, types, unit and integration tests)
# Both install what is missing first and are safe to run twice.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8
STAMP := $(VENV)/.installed

.PHONY: install system-deps venv jars demo test lint unit integration stack-down clean \
	bench-loadgen dashboards

install: system-deps venv jars

# Debian packages: a JDK (Kafka, the registry and Spark run on Java 17+), Maven
# (resolves their jars from Maven Central) and Prometheus.
system-deps:
	@scripts/install-system-deps.sh

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q "uv==$(UV_VERSION)"
	@echo "installing Python packages from requirements.lock"
	@VIRTUAL_ENV=$(VENV) $(BIN)/uv pip sync -q requirements.lock
	@VIRTUAL_ENV=$(VENV) $(BIN)/uv pip install -q --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)

# Kafka, Apicurio Registry and the Spark connectors, resolved once into the jar cache.
jars: venv
	@$(BIN)/streamhouse jars

demo: install
	@$(BIN)/streamhouse demo

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m marts.lint

unit: venv
	$(BIN)/pytest -m "not integration" -q

integration: install
	$(BIN)/pytest -m integration -q

test: install lint
	$(BIN)/pytest -q

# Throughput of the load generator (acks=all), 1 vs 2 processes, median of 5 runs each.
# Starts Kafka and the registry if they are not running.
bench-loadgen: install
	@$(BIN)/streamhouse stack up kafka registry
	$(BIN)/streamhouse bench loadgen --runs 5 --duration 10 --processes 1 --processes 2

# Grafana's dashboard JSON and the recording rules, from monitoring/dashboards/ (commit them).
dashboards: venv
	@$(BIN)/streamhouse dashboard generate

stack-down: venv
	@$(BIN)/streamhouse stack down

# The lock is regenerated only on purpose, never by install.
lock:
	@$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

clean: stack-down
	rm -rf $(VENV) .state .state-test
