# Every target creates or reuses the virtual environment itself: a fresh machine needs only Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# REPLICAS=orders=3,inventory=2 runs that many processes of those services.
REPLICAS ?=

.PHONY: up up-distributed test lint bench chaos seed clean install

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

up: $(STAMP)
	$(BIN)/colony up

up-distributed: $(STAMP)
	$(BIN)/colony up --distributed $(if $(REPLICAS),--replicas $(REPLICAS))

# The checks that hold every change, before the suite: lint, formatting, types (src/), and
# the architecture contract.
lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

test: lint
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench

# Every fault family under load, on SQLite and on PostgreSQL (the machine's server), each
# topology with its own NATS; reports under var/chaos/.
chaos: $(STAMP)
	$(BIN)/colony chaos matrix --rate 20 --duration 60 --fault-at 20 --fault-for 15 --database sqlite
	$(BIN)/colony chaos matrix --rate 20 --duration 60 --fault-at 20 --fault-for 15 --database postgresql

seed: $(STAMP)
	$(BIN)/colony seed

clean:
	rm -rf $(VENV) var
