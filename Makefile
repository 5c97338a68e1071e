# cvtune — every target installs what it needs; nothing relies on a hand-prepared machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_HOME ?= $(CURDIR)/.demo

.PHONY: install test test-fast lint demo clean bench

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

test: install
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: install
	$(PY) -m pytest -q -p no:cacheprovider -m "not stack"

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) benchmarks/warm_pool.py

clean:
	rm -rf $(VENV) $(DEMO_HOME) cvtune-artifacts .pytest_cache
