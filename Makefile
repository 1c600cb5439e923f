# Everything runs from the project's own virtual environment, created on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Root installs system packages itself; anyone else through sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SPARK_STAMP := $(VENV)/.installed-spark

.PHONY: install test serve chromium java

# mlflow run --env-manager local runs the first python on PATH: this environment's.
RUN := PATH=$(CURDIR)/$(BIN):$$PATH

# pip's own output goes to $(VENV)/install.log; on failure its last lines are shown.
$(STAMP): pyproject.toml
	@echo "install: the project and its pinned dependencies into $(VENV) (a few minutes the first time) ..."
	@began=$$(date +%s); \
	{ test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); } && \
	{ $(BIN)/python -m pip install --upgrade pip && $(BIN)/python -m pip install -e '.[dev]'; } \
		> $(VENV)/install.log 2>&1 || { tail -n 15 $(VENV)/install.log; \
		echo "install FAILED: the last lines of $(VENV)/install.log are above (Python 3.11 or 3.12 is" \
		"needed: PYTHON=python3.12 make ...). Rerun with: make install"; exit 1; }; \
	touch $(STAMP); echo "install: done in $$(( $$(date +%s) - began )) s"

# pyspark (a 450 MB download) only for what needs it: batch_score -P engine=spark and the tests.
$(SPARK_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,spark]'
	touch $(SPARK_STAMP)

install: $(STAMP)

# Headless Chromium (Debian's package) for the dashboard's browser test, installed only where missing.
chromium:
	@command -v chromium > /dev/null || { echo "install: Chromium for the dashboard's browser test ..."; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium > /dev/null; }

# Spark 4 runs on Java 17 or 21: installed from apt only where no `java` is on PATH; `make serve` never needs it.
java:
	@command -v java > /dev/null || { echo "install: Java 17 for the Spark tests ..."; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless > /dev/null; }

test: $(STAMP) $(SPARK_STAMP) chromium java
	$(BIN)/python -m pytest

# Fresh clone to a running service: install, then (only if the registry has no champion)
# generate data, train and promote, then serve on 127.0.0.1:5001. The port is checked first,
# so a taken port is said before a minute of training, not after. LOG_LEVEL=INFO shows everything.
serve: $(STAMP)
	@$(BIN)/python -m serving.startup_checks
	@$(RUN) $(BIN)/python -m pipelines.bootstrap
	@$(RUN) $(BIN)/python -m serving
