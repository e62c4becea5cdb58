# migration-waves: `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

ROOT    := $(abspath .)
VENV    := $(ROOT)/.venv
PY      := $(VENV)/bin/python
UV      := $(VENV)/bin/uv
FAULT   ?=
WAVE    ?= pilot

# airflow standalone starts its components by name: the venv's bin goes first on PATH.
export PATH := $(VENV)/bin:$(PATH)

# One Airflow home inside the project (git-ignored), SQLite, this project's dags/ and plugins/.
export AIRFLOW_HOME                      := $(ROOT)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER        := $(ROOT)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER     := $(ROOT)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES      := False
export AIRFLOW__CORE__EXECUTOR           := LocalExecutor
# New wave DAGs start paused (Airflow's default): `make up` must not start a change window by itself.
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS   := admin:admin
export AIRFLOW__API__PORT                := 8080
export GX_ANALYTICS_ENABLED              := false
export PYTHONDONTWRITEBYTECODE           :=

.PHONY: help install demo up down test test-fast lint bench-parse bench-transfer bench-canary bench-gpu clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip uv

$(VENV)/.installed: $(PY) pyproject.toml requirements.lock
	$(UV) pip install -q --python $(PY) -r requirements.lock
	$(UV) pip install -q --python $(PY) --no-deps -e .
	touch $@

install: $(VENV)/.installed ## create .venv with the locked dependencies (uv)

$(AIRFLOW_HOME)/airflow.db: $(VENV)/.installed
	mkdir -p $(AIRFLOW_HOME)
	$(VENV)/bin/airflow db migrate > $(AIRFLOW_HOME)/db-migrate.log 2>&1 || (tail -30 $(AIRFLOW_HOME)/db-migrate.log; exit 1)

demo: $(AIRFLOW_HOME)/airflow.db ## build demo inputs, start the demo services, run the pilot wave end to end (FAULT=latency for a slow candidate)
	$(PY) -m migration_waves.airflow.demo --wave $(WAVE) $(if $(FAULT),--fault $(FAULT),)

up: $(AIRFLOW_HOME)/airflow.db ## airflow standalone on this project, with the demo services; Ctrl-C stops it
	$(PY) -m migration_waves.airflow.demo --serve $(if $(FAULT),--fault $(FAULT),)

down: ## stop what make demo / make up started here (Airflow standalone, demo services, feature writer)
	$(PY) -m migration_waves.airflow.demo --down

test: $(VENV)/.installed ## run every test (unit, dags, integration, e2e)
	$(PY) -m pytest -q

test-fast: $(VENV)/.installed ## unit tests only
	$(PY) -m pytest -q -m unit

lint: $(VENV)/.installed ## ruff and the wave specs
	$(VENV)/bin/ruff check plugins dags tests bench
	$(VENV)/bin/migration-waves lint include/waves

bench-parse: $(VENV)/.installed ## time parsing of dags/ with Python warm
	$(PY) bench/parse_dags.py

bench-transfer: $(VENV)/.installed ## copy/sync vs rsync and rclone on a generated corpus (needs: apt-get install -y rsync rclone)
	$(PY) bench/transfer.py

bench-canary: $(VENV)/.installed ## canary judge on known distributions (false rollbacks, detection) and load generator vs wrk (apt-get install -y wrk)
	$(PY) bench/canary_sim.py

GOLDEN ?= include/golden_images/training-cpu-dev.yaml
RUNS ?= 3
bench-gpu: $(VENV)/.installed ## golden-image suite vs its baselines (GOLDEN=..., RUNS=3; torch on a GPU worker)
	$(PY) bench/gpu.py --golden $(GOLDEN) --runs $(RUNS)

clean: down ## remove demo data, state and the Airflow home (keeps .venv)
	rm -rf .demo .airflow
