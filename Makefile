# Everything a fresh machine needs: `make demo` and `make test` create .venv themselves.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo test lint bench bench-smoke bench-peers clean browser

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

# The dashboard's browser tests drive Debian's chromium (never a downloaded browser); as
# root without it, install it; otherwise the tests skip with the reason (fail under CI=true).
browser:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		{ apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && \
		  apt-get install -y -q chromium >/dev/null; }; } || echo "chromium not installed: browser tests will skip"; \
	fi

test: lint browser
	$(BIN)/pytest

bench: $(BIN)/.installed
	$(BIN)/python -m bench

bench-peers: $(BIN)/.installed
	$(BIN)/python -m bench.peers

bench-smoke: $(BIN)/.installed
	$(BIN)/python -m bench --quick --no-progress

clean:
	rm -rf $(VENV) .venv-peers .venv-peers-arq .workhorse .pytest_cache .mypy_cache .ruff_cache
