# Every target bootstraps .venv itself: a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

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

test: $(STAMP) system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

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
	rm -rf $(VENV) var .pytest_cache
