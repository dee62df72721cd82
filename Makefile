# sparkgate: `make run` serves the local stack on loopback; `make test` runs the whole suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Two installs: `make run` needs only the local stack and the engine (requirements-run.txt); `make test`,
# `make deploy` and `make bench` add the CDK app, the tests and the linters (requirements-dev.txt). Both add
# the local Flink without its Python-UDF dependencies (requirements-flink.txt says why).
RUN_REQS := requirements.txt requirements-engine.txt requirements-run.txt requirements-flink.txt
RUN_STAMP := $(VENV)/.run-installed-$(shell cat $(RUN_REQS) 2>/dev/null | cksum | cut -d' ' -f1)
STAMP := $(VENV)/.installed-$(shell cat requirements*.txt infra/requirements.txt 2>/dev/null | cksum | cut -d' ' -f1)

.PHONY: run test lint typecheck unit java chromium install install-run bench user clean deploy destroy openapi

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip >/dev/null

$(RUN_STAMP): | $(VENV)/bin/python
	$(BIN)/pip install -r requirements-run.txt
	$(BIN)/pip install --no-deps -r requirements-flink.txt
	rm -f $(VENV)/.run-installed-* && touch $@

$(STAMP): | $(VENV)/bin/python
	$(BIN)/pip install -r requirements-dev.txt
	$(BIN)/pip install --no-deps -r requirements-flink.txt
	rm -f $(VENV)/.installed-* $(VENV)/.run-installed-* && touch $@ $(RUN_STAMP)

install: $(STAMP) java chromium

install-run: $(RUN_STAMP) java

java:
	@scripts/ensure-java.sh
	@scripts/ensure-cluster-tools.sh

# the console's browser tests (tests/console) drive Debian's chromium with Playwright
chromium:
	@scripts/ensure-chromium.sh

run: install-run
	$(BIN)/python -m chalicelib.local.stack

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy infra

test: install lint
	$(BIN)/pytest

user: $(RUN_STAMP)
	$(BIN)/python -m chalicelib.cli create-user $(if $(ADMIN),--admin,) --username "$(NAME)"

# docs/openapi.json from the route table and the request models (tests/functional/test_openapi.py checks it is current)
openapi: $(RUN_STAMP)
	$(BIN)/python -m chalicelib.openapi

bench: install
	$(BIN)/python -m bench.run

deploy: install
	infra/deploy.sh deploy $(or $(STAGE),dev)

destroy: $(STAMP)
	infra/deploy.sh destroy $(or $(STAGE),dev)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
