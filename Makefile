# fmp — the two commands a new user needs are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock requirements-nodeps.txt pyproject.toml | cksum | cut -d' ' -f1)
S3 ?=

export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120
export PREFECT_LOGGING_LEVEL ?= WARNING

.PHONY: install demo test e2e serve weights clean

install: $(STAMP)

$(STAMP): requirements.lock requirements-nodeps.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -r requirements-nodeps.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-* && touch $@

demo: $(STAMP)
	mkdir -p .fmp/prefect
	PREFECT_HOME=$(CURDIR)/.fmp/prefect $(BIN)/python -m flows.demo $(if $(S3),--s3,)

# Everything, the e2e test included (it skips only when /usr/bin/chromium is missing).
test: $(STAMP)
	$(BIN)/python -m pytest -q

# Only the end-to-end test: prefect server, deploy, a worker, the UI in headless Chromium.
e2e: $(STAMP)
	$(BIN)/python -m pytest -q -m e2e tests/e2e

# A local Prefect server + moto S3 + every deployment + a worker (Ctrl-C stops all).
# FMP_CATALOG=tests/integration/fake_catalog.yaml make serve runs without trained weights.
serve: $(STAMP)
	scripts/serve.sh

weights: $(STAMP)
	$(BIN)/python -m benchmarks.train

clean:
	rm -rf .fmp
