# One entry point for people and CI. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# uv from PATH, or the one deploy/prerequisites.sh installed (with pip, or in its own venv).
# Looked up at each use: the first target may be what installs it.
UV_VENV ?= $(HOME)/.cache/bank/uv
export UV_VENV
UV = $(shell command -v uv 2>/dev/null || { test -x $(UV_VENV)/bin/uv && echo $(UV_VENV)/bin/uv; } \
	|| echo "python3 -m uv")
# What deploy/prerequisites.sh checks for: `run` (Java, Maven, PostgreSQL, uv), `test` (and Chromium).
PREREQUISITES = run
PYTEST_ARGS ?=

.PHONY: help install run start stop restart status test test-unit lint format kafka-jars clean \
	rebuild-read-model demo chaos bench bench-quick docker-engine docker-engine-stop images \
	compose-up compose-down docker-smoke

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

install: ## Install what is missing (apt-get, pip), the Python dependencies and the Kafka jars
	@deploy/prerequisites.sh $(PREREQUISITES)
	$(UV) sync --frozen
	$(UV) run bank-infra fetch

run: install ## Start Kafka, PostgreSQL and the five services; follow their logs; Ctrl-C stops
	$(UV) run bank-infra run

start: install ## The same in the background
	$(UV) run bank-infra start

stop: ## Stop what `make start` or `make run` started
	$(UV) run bank-infra stop

restart: ## Restart one service: make restart SERVICE=accounts
	$(UV) run bank-infra restart $(SERVICE)

status: ## Show what is running, with PIDs and readiness
	$(UV) run bank-infra status

test: PREREQUISITES = test
test: install ## Run the whole test suite against a real Kafka and PostgreSQL
	@# BANK_TEST_INFRA=docker: in containers of the bank's images, built (or checked) first.
	@if [ "$$(echo "$${BANK_TEST_INFRA:-}" | tr '[:upper:]' '[:lower:]')" = docker ]; then \
		deploy/docker/images.sh; fi
	$(UV) run pytest $(PYTEST_ARGS)

test-unit: install ## Only the pure, fast tests (no infrastructure)
	$(UV) run pytest tests/unit $(PYTEST_ARGS)

lint: install ## ruff (lint and format check) and mypy --strict
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy

format: install ## Apply ruff's fixes and formatting
	$(UV) run ruff check --fix .
	$(UV) run ruff format .

kafka-jars: install ## Fetch the Apache Kafka jars into the cache (~/.cache/bank)

DURATION ?= 600
SEED ?= 1
chaos: install ## Long run of the bank under faults: make chaos DURATION=600 SEED=1
	$(UV) run python -m tests.reliability.chaos --duration $(DURATION) --seed $(SEED)

bench: install ## Benchmark: ours vs plain SQL vs the eventsourcing library (~15 min; table, JSON, PNG)
	$(UV) run python -m bench.suite

bench-quick: install ## A tiny run of the benchmark that only checks the tool works (CI)
	$(UV) run python -m bench.suite --quick

demo: ## Tell the tutorial's story through the REST APIs of a running bank (make run first)
	$(UV) run python -m bank_deploy.demo

rebuild-read-model: install ## Empty the read tables and replay the event stores (system may run)
	$(UV) run python -m bank_projector.rebuild

docker-engine: ## A Docker engine: as root, starts Debian's when none answers
	deploy/docker/engine.sh

docker-engine-stop: ## Stop the engine `make docker-engine` started
	deploy/docker/engine.sh stop

images: docker-engine ## Build the images: Kafka, PostgreSQL, the services (Debian-based, cached)
	deploy/docker/images.sh

compose-up: images ## `docker compose up` in the background, until every service is healthy
	deploy/docker/engine.sh compose
	@# The token keys and demo users the containers mount (docker-compose.yml), made once.
	$(UV) run bank-infra credentials
	docker compose up --detach --wait --wait-timeout 300

compose-down: ## `docker compose down -v`: the cluster's containers, network and volumes go
	docker compose down --volumes --remove-orphans

docker-smoke: install ## The container test CI runs: compose up, demo, down; testcontainers tests
	UV="$(UV)" deploy/docker/smoke.sh

clean: stop ## Stop everything and delete local state (.bank, .bank-test)
	rm -rf .bank .bank-test
