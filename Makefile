# One-command set-up: every target installs what it needs first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DRIVER_VENV := build/driver-venv
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
PYTEST_ARGS ?=
LINT_PATHS := airflow_provider_openeo tests example_dags local_backend deploy benchmarks

.PHONY: install driver-venv services test test-fast lint format local-backend clean

$(UV):
	$(PYTHON) -m pip install --quiet --user uv || $(PYTHON) -m pip install --quiet uv

$(VENV)/.installed: pyproject.toml | $(UV)
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(VENV)
	$(UV) pip install --quiet --python $(PY) -e '.[test]'
	touch $@

$(DRIVER_VENV)/.installed: local_backend/requirements.txt | $(UV)
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(DRIVER_VENV)
	$(UV) pip install --quiet --python $(DRIVER_VENV)/bin/python --prerelease=allow -r local_backend/requirements.txt
	touch $@

install: $(VENV)/.installed

driver-venv: $(DRIVER_VENV)/.installed

services:
	@scripts/ensure_services.sh

test: install driver-venv services
	@scripts/ensure_browser.sh
	$(VENV)/bin/ruff check $(LINT_PATHS)
	@# two lanes and the idle README tests (scripts/run_tests.sh)
	scripts/run_tests.sh $(PY) $(PYTEST_ARGS)

test-fast: install driver-venv
	$(PY) -m pytest -ra -m "not slow" $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

format: install
	$(VENV)/bin/ruff check --fix $(LINT_PATHS)
	$(VENV)/bin/ruff format $(LINT_PATHS)

# `make local-backend NAME=foo PORT=8081`: one local openEO backend in the foreground, serving the examples' UDP;
# it needs only build/driver-venv, and it stops with the make that started it.
NAME ?= local
PORT ?= 8081
local-backend: driver-venv
	$(DRIVER_VENV)/bin/python -m local_backend.launcher --name $(NAME) --port $(PORT) --stop-with-parent \
		--process ndvi_timeseries=example_dags/udp/ndvi_timeseries.json

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache

# `make demo`: two local openEO backends and a live Airflow running the process-based example (deploy/README.md).
# DEMO_ARGS=--stop-after stops everything at the end; otherwise `make demo-stop` does.
DEMO_ARGS ?=

.PHONY: demo demo-stop bench

demo: install driver-venv
	$(PY) -m deploy.demo $(DEMO_ARGS)

demo-stop: install
	$(PY) -m deploy.demo --stop

# `make bench`: ours on a live Airflow next to MBJM's run_jobs on the same local backends (BENCHMARKS.md).
# BENCH_ARGS=--quick for the short mode; --only throughput,heterogeneous,production,job_db,scale,trigger_memory for a subset.
BENCH_ARGS ?=

bench: install driver-venv services
	$(PY) -m benchmarks.run $(BENCH_ARGS)
