# Everything runs from the project's own virtual environment, created on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SPARK_STAMP := $(VENV)/.installed-spark

.PHONY: install test serve java

# mlflow run --env-manager local runs the first python on PATH: this environment's.
RUN := PATH=$(CURDIR)/$(BIN):$$PATH

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# pyspark (a 450 MB download) only for what needs it: batch_score -P engine=spark and the tests.
$(SPARK_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,spark]'
	touch $(SPARK_STAMP)

install: $(STAMP)

# Spark 4 runs on Java 17 or 21. Installed from apt only where no `java` is on PATH,
# as root or through sudo; `make serve` never needs it.
java:
	@command -v java >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" -eq 0 ]; then SUDO=; \
	  elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; \
	  else echo "Java is missing and installing it needs root or sudo:" \
	            "apt-get install openjdk-17-jre-headless" >&2; exit 1; fi; \
	  $$SUDO apt-get update && \
	  $$SUDO apt-get install -y --no-install-recommends openjdk-17-jre-headless; }

test: $(STAMP) $(SPARK_STAMP) java
	$(BIN)/python -m pytest

# Fresh clone to a running service: install, then (only if the registry has no champion)
# generate data, train and promote, then serve on 127.0.0.1:5001.
serve: $(STAMP)
	$(RUN) $(BIN)/python -m pipelines.bootstrap
	$(RUN) $(BIN)/python -m serving
