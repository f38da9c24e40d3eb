# fmp — the two commands a new user needs are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock requirements-nodeps.txt pyproject.toml | cksum | cut -d' ' -f1)
S3 ?=
# pyproject.toml's extras the two commands use: pytest and the linters (test), moto for
# `make demo S3=1` and the S3 tests (s3-local), matplotlib for the benchmarks' plot (bench),
# the `duckdb` shell for the README's ledger queries (shell), the DuckLake store's extensions (lake).
EXTRAS := test,bench,s3-local,shell,lake

export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120
export PREFECT_LOGGING_LEVEL ?= WARNING

.PHONY: install system-packages demo test lint e2e serve cluster-demo weights clean

install: $(STAMP)

# The Debian packages fmp uses (tesseract-ocr with English data, chromium): apt-get installs the
# missing ones when run as root; otherwise, or if that fails, one line says so and the tests that
# need them skip. Checked on every install (cheap), so a fresh machine gets them from `make test`.
system-packages:
	@PYTHON=$(PYTHON) bash scripts/system-packages.sh

$(STAMP): requirements.lock requirements-nodeps.txt pyproject.toml | system-packages
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -r requirements-nodeps.txt
	$(BIN)/python -m pip install -q --no-build-isolation -e ".[$(EXTRAS)]"
	rm -f $(VENV)/.installed-* && touch $@

demo: $(STAMP)
	mkdir -p .fmp/prefect
	PREFECT_HOME=$(CURDIR)/.fmp/prefect $(BIN)/python -m flows.demo $(if $(S3),--s3,)

# ruff (style and bug patterns), mypy (types), lint-imports (the package layers): each one runs,
# and the names of those that failed collect in $failed.
LINTERS = echo "== ruff check"; $(BIN)/ruff check --output-format concise . || failed="$$failed ruff"; \
	echo "== mypy"; $(BIN)/mypy || failed="$$failed mypy"; \
	echo "== lint-imports"; $(BIN)/lint-imports --no-logo || failed="$$failed lint-imports"

# The linters, then every test, the e2e test included (it skips only when /usr/bin/chromium is
# missing). All of them run; the target fails if any failed. pytest runs in 2 processes
# (pytest-xdist), a test file's tests in one of them (module fixtures start their servers once):
# most of the suite's time is waiting on servers and child processes, so two overlap
# (12:33 -> 8:54 on 2 cores, the same 802 tests).
test: $(STAMP)
	@failed=; $(LINTERS); \
	echo "== pytest"; $(BIN)/python -m pytest -q -n 2 --dist loadfile || failed="$$failed pytest"; \
	if [ -n "$$failed" ]; then echo "make test: failed:$$failed" >&2; exit 1; fi

lint: $(STAMP)
	@failed=; $(LINTERS); \
	if [ -n "$$failed" ]; then echo "make lint: failed:$$failed" >&2; exit 1; fi

# Only the end-to-end test: prefect server, deploy, a worker, the UI in headless Chromium.
e2e: $(STAMP)
	$(BIN)/python -m pytest -q -m e2e tests/e2e

# A local Prefect server + moto S3 + every deployment + a worker (Ctrl-C stops all).
# FMP_CATALOG=tests/integration/fake_catalog.yaml make serve runs without trained weights.
serve: $(STAMP)
	scripts/serve.sh

# One machine standing for many: Postgres (Prefect's database and the DuckLake catalog), a Prefect
# server, moto S3, 1, 2 then 3 workers on a process pool; prints lost/doubled counts, the ledger
# against the 1-worker round and the throughput table (about 6 minutes on 2 cores).
cluster-demo: $(STAMP)
	$(BIN)/python -m benchmarks.cluster

weights: $(STAMP)
	$(BIN)/python -m benchmarks.train
	$(BIN)/python -m benchmarks.calibrate

clean:
	rm -rf .fmp
