# Everything a fresh machine needs: `make demo` and `make test` create .venv themselves.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo test lint bench bench-smoke bench-peers clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/workhorse demo

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest

bench: $(BIN)/.installed
	$(BIN)/python -m bench

bench-peers: $(BIN)/.installed
	$(BIN)/python -m bench.peers

bench-smoke: $(BIN)/.installed
	$(BIN)/python -m bench --quick --no-progress

clean:
	rm -rf $(VENV) .venv-peers .venv-peers-arq .workhorse .pytest_cache .mypy_cache .ruff_cache
