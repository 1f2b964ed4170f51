# Every target bootstraps .venv itself: a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The test identity provider (tests/idp, npm's oidc-provider): installed from the lock file.
IDP_STAMP := tests/idp/node_modules/.package-lock.json
# Test processes (pytest-xdist): most of the suite waits on real servers, so two
# processes on two cores take about two thirds of the time of one. 0: one process.
PYTEST_WORKERS ?= 2

.PHONY: run test bench check system-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/callvault up

system-deps:
	./scripts/system-deps

$(IDP_STAMP): tests/idp/package.json tests/idp/package-lock.json | system-deps
	npm ci --prefix tests/idp --no-audit --no-fund --loglevel=error
	touch $(IDP_STAMP)

test: $(STAMP) system-deps $(IDP_STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/access.py
	$(BIN)/python bench/retention.py
	$(BIN)/python bench/import.py

check: $(STAMP)
	$(BIN)/ruff format --check callvault streams storage policies tests bench
	$(BIN)/ruff check callvault streams storage policies tests bench
	$(BIN)/mypy callvault streams storage policies

clean:
	rm -rf $(VENV) var .pytest_cache tests/idp/node_modules
