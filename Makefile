# bearl development commands. `make run` and `make test` are the README's quick start.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
TORCH   ?= torch==2.13.0

.PHONY: setup run test lint format clean

# A virtualenv with torch installed FIRST, pinned ($(TORCH), default torch==2.13.0), so that
# installing bearl's requirements keeps that build instead of letting pip pick another; then
# bearl in editable mode with what `make run` needs and no extras. Where the pin resolves to
# the multi-GB CUDA build (PyPI's Linux wheels) and a CPU one is wanted, pass the CPU index,
# as the README says:
# make setup TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
$(BIN)/bearl: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e .
	touch $(BIN)/bearl

setup: $(BIN)/bearl

run: setup
	$(BIN)/bearl train

# What the tests need on top: the dev extra (pytest, ruff, hypothesis, SB3, ONNX, Ray), datagen
# and docs (mkdocs, with which tests/test_site.py builds the site); installed for `make test`
# and the linters only, so that the quick start's `make run` does not wait for them.
$(VENV)/.test-installed: $(BIN)/bearl pyproject.toml
	$(BIN)/pip install -q -e ".[dev,datagen,docs]"
	touch $(VENV)/.test-installed

test: setup $(VENV)/.test-installed
	$(BIN)/ruff check bearl tests
	$(BIN)/python -m pytest -q

lint: setup $(VENV)/.test-installed
	$(BIN)/ruff check bearl tests bench studies
	$(BIN)/ruff format --check bearl tests bench studies

format: setup $(VENV)/.test-installed
	$(BIN)/ruff format bearl tests bench studies

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
