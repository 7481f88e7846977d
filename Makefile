# FHIR River: the commands a user types. Each target is a thin call into
# infra/ (the local stack) or the Python tools; see README.md.
SHELL := /bin/bash
PYTHON := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: help install start stop status run test lint bench

help:
	@grep -E '^[a-z]+:.*## ' Makefile | sed 's/:.*## /\t/'

install: ## install what is missing: system packages, Python venv, Kafka/Connect jars
	@bash infra/install.sh

start: install ## start the local stack (Kafka, Connect, PostgreSQL, SFTP)
	@bash infra/start.sh

stop: ## stop everything make start / make run started
	@bash infra/stop.sh

status: ## show which part of the stack runs, and where
	@bash infra/status.sh

run: start ## start the stack, load example data, run the example mapping
	@bash infra/run.sh

test: start ## install, start the stack (and FerretDB) and run every test
	@bash infra/install.sh ferretdb
	@bash infra/start.sh ferretdb
	@$(PYTHON) -m pytest $(PYTEST_ARGS)

lint:
	@.venv/bin/ruff check .

bench: start ## print the benchmark figures
	@$(PYTHON) benchmarks/transform.py
