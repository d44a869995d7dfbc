# Two entry points (see README): `make demo` and `make test`. Both build .venv from scratch when needed.
# `make docs` builds the documentation (warnings are errors) into docs/_build/html.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint docs venv clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev,yolo,export,docs,explain,medical]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python tools/demo.py --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check mtbrain tools tests benchmarks

docs: $(STAMP)
	$(BIN)/python -m sphinx -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf $(VENV) runs .pytest_cache docs/_build docs/reference/generated docs/reference/cli.md docs/reference/config.md
