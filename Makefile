# bearl development commands. `make run` and `make test` are the README's quick start.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
TORCH   ?= torch==2.13.0

.PHONY: setup run test lint format clean

# A virtualenv with a CPU torch installed FIRST (a plain `torch` requirement would pull the
# multi-GB CUDA build), then bearl in editable mode with its dev extras.
$(BIN)/bearl: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[dev,datagen]"
	touch $(BIN)/bearl

setup: $(BIN)/bearl

run: setup
	$(BIN)/bearl train

test: setup
	$(BIN)/ruff check bearl tests
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check bearl tests bench studies
	$(BIN)/ruff format --check bearl tests bench studies

format: setup
	$(BIN)/ruff format bearl tests bench studies

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
