# The two commands of the quick start: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
ELDERCARE := $(VENV)/bin/eldercare
export ELDERCARE_ENVIRONMENT ?= development

.PHONY: demo test services services-down venv migrate bench lint check fmt clean

venv:
	@scripts/venv.sh

services: venv
	@scripts/services.sh up
	@$(ELDERCARE) db migrate
	@$(ELDERCARE) broker sync

services-down:
	@scripts/services.sh down

demo: services
	@$(ELDERCARE) demo

test: services
	@$(PY) -m pytest -q -p no:cacheprovider

bench: services
	@$(PY) -m bench.run

lint: venv
	@$(VENV)/bin/ruff check eldercare tests bench harness dashboards docker
	@$(VENV)/bin/ruff format --check eldercare tests bench harness dashboards docker
	@$(VENV)/bin/mypy
	@$(VENV)/bin/lint-imports

fmt: venv
	@$(VENV)/bin/ruff format eldercare tests bench harness
	@$(VENV)/bin/ruff check --fix eldercare tests bench harness

clean: services-down
	rm -rf .local $(VENV)
