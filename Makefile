# sparkgate: `make run` serves the local stack on loopback; `make test` runs the whole suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements*.txt infra/requirements.txt 2>/dev/null | cksum | cut -d' ' -f1)

.PHONY: run test lint typecheck unit java install bench user clean deploy destroy

$(STAMP):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip >/dev/null
	$(BIN)/pip install -r requirements-dev.txt $(if $(wildcard infra/requirements.txt),-r infra/requirements.txt,)
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP) java

java:
	@scripts/ensure-java.sh

run: install
	$(BIN)/python -m chalicelib.local.stack

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy infra

test: install lint
	$(BIN)/pytest

user: $(STAMP)
	$(BIN)/python -m chalicelib.cli create-user $(if $(ADMIN),--admin,) --username "$(NAME)"

bench: install
	$(BIN)/python -m bench.run

deploy: install
	infra/deploy.sh deploy $(or $(STAGE),dev)

destroy: $(STAMP)
	infra/deploy.sh destroy $(or $(STAGE),dev)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
