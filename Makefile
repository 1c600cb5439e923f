# Everything runs from the project's own virtual environment, created on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test serve

# mlflow run --env-manager local runs the first python on PATH: this environment's.
RUN := PATH=$(CURDIR)/$(BIN):$$PATH

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

# Fresh clone to a running service: install, then (only if the registry has no champion)
# generate data, train and promote, then serve on 127.0.0.1:5001.
serve: $(STAMP)
	$(RUN) $(BIN)/python -m pipelines.bootstrap
	$(RUN) $(BIN)/python -m serving
