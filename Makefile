# Two commands do everything from a fresh clone: `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# The Lambda runtime is python3.13; pyenv shims only answer when PYENV_VERSION names the version.
PYENV_313 := $(shell pyenv versions --bare 2>/dev/null | grep -E '^3\.13' | tail -n 1)
PYTHON313 ?= $(if $(PYENV_313),env PYENV_VERSION=$(PYENV_313) python3.13,python3.13)
# `sam build` looks for python3.13 on PATH: the venv provides it.
export PATH := $(BIN):$(PATH)
export SAM_CLI_TELEMETRY := 0
# Offline tools (sam validate, cfn-lint, moto) need a region and some credentials, never real ones.
OFFLINE_AWS := AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing

.PHONY: help venv chromium lint typecheck template build pytest test test-deployed demo report-screenshot local invoke chaos latency load fuzz ops reconcile-cost coldstart cost clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements-dev.lock functions/requirements.txt
	@test -x $(BIN)/python || $(PYTHON313) -m venv $(VENV)
	@$(BIN)/python -c 'import sys; assert sys.version_info[:2] == (3, 13), f"need python3.13, got {sys.version}"'
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.lock -r functions/requirements.txt
	@touch $@

venv: $(VENV)/.installed  ## create the python3.13 venv with the pinned dev dependencies

# The report's screenshot test and `make report-screenshot` need a real browser: Debian's chromium package.
chromium:  ## headless Chromium (Debian package), installed with apt-get when missing and running as root
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "chromium is missing: install it with 'sudo apt-get install -y chromium' (Debian/Ubuntu), then run make again" >&2; exit 1; fi; }
	@command -v chromium >/dev/null 2>&1 || { echo "chromium is still missing after apt-get install chromium" >&2; exit 1; }

lint: venv  ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv  ## mypy (strict)
	$(BIN)/mypy

template: venv  ## cfn-lint (informational findings included) and sam validate --lint
	$(OFFLINE_AWS) $(BIN)/cfn-lint -c I -- template.yaml
	$(OFFLINE_AWS) $(BIN)/sam validate --lint

build: venv  ## sam build (no container)
	$(OFFLINE_AWS) $(BIN)/sam build --parallel --cached

# AWS_SAM_STACK_NAME is unset: `make test` runs the end-to-end suite on the local stack, never on a deployed one.
pytest: venv chromium  ## the test suite (timing comparisons last, on their own)
	env -u AWS_SAM_STACK_NAME $(OFFLINE_AWS) $(BIN)/pytest -n 2 -m "not perf"
	env -u AWS_SAM_STACK_NAME $(OFFLINE_AWS) $(BIN)/pytest -m perf

test: lint typecheck template build pytest  ## everything CI runs

# The end-to-end suite `make test` runs on the local stack, here against a deployed one: real credentials
# and region from the usual AWS environment, so none of OFFLINE_AWS.
test-deployed: venv  ## the end-to-end suite against a deployed stack: AWS_SAM_STACK_NAME=rideonce-dev AWS_REGION=us-east-1 make test-deployed
	@test -n "$$AWS_SAM_STACK_NAME" || { echo "usage: AWS_SAM_STACK_NAME=<stack> AWS_REGION=<region> make test-deployed"; exit 2; }
	$(BIN)/pytest -p no:xdist -s -m e2e tests/deployed

# The local stack imports the handlers from their CodeUri (functions/) and the emulators from local/.
LOCAL_ENV := PYTHONPATH=$(CURDIR)/functions:$(CURDIR)

demo: venv  ## the whole pipeline on the local stack, then .local/report.{json,html}; e.g. ARGS="--rides 2000"
	$(LOCAL_ENV) $(BIN)/python -m local.demo $(ARGS)

report-screenshot: venv chromium  ## the last demo's report page drawn by headless Chromium: .local/report.png
	$(LOCAL_ENV) $(BIN)/python -m local.report $(ARGS)

local: venv  ## serve the ride API on 127.0.0.1:3000 with the pipeline running behind it
	$(LOCAL_ENV) $(BIN)/python -m local.serve $(ARGS)

invoke: venv  ## run one function with an event: make invoke FUNCTION=ApiFunction EVENT=events/api-create-ride.json
	@test -n "$(FUNCTION)" -a -n "$(EVENT)" || { echo "usage: make invoke FUNCTION=<logical id> EVENT=events/<file>.json"; exit 2; }
	$(LOCAL_ENV) $(BIN)/python -m local.invoke $(FUNCTION) $(EVENT)

chaos: venv  ## seeded faults at every hop, rideonce beside the usual designs; e.g. ARGS="--seed 3"
	$(LOCAL_ENV) $(BIN)/python -m local.chaos $(ARGS)

latency: venv  ## commit -> applied p50/p99 with 30% of deliveries reordered, in simulated time; e.g. ARGS="--rides 2000"
	$(LOCAL_ENV) $(BIN)/python -m local.latency $(ARGS)

load: venv  ## concurrent clients retrying with their keys over HTTP; e.g. ARGS="--clients 16 --rides 20"
	$(LOCAL_ENV) $(BIN)/python -m local.load $(ARGS)

fuzz: venv  ## the fuzz tests alone, with schemathesis's summary and Hypothesis's statistics
	$(OFFLINE_AWS) $(BIN)/pytest -p no:xdist -s -m fuzz --hypothesis-show-statistics tests/fuzz

# The local stack by default (its outputs file); a deployed one with ARGS="--stack NAME ...", using the AWS
# environment's region and credentials, so none of OFFLINE_AWS.
ops: venv  ## operate a stack: make ops ARGS="audit" | ARGS="--stack rideonce-dev redrive consumer-dlq --apply"
	$(LOCAL_ENV) $(BIN)/python -m ops $(ARGS)

reconcile-cost: venv  ## the reconciler's DynamoDB reads per run and per ride change at 10,000 and 100,000 outbox records
	$(LOCAL_ENV) $(BIN)/python -m local.reconcile_cost $(ARGS)

cost: venv  ## AWS dollars per million ride changes, per hop, rideonce beside Powertools; e.g. ARGS="--rides 300"
	$(LOCAL_ENV) $(BIN)/python -m local.cost $(ARGS)

coldstart: venv  ## handler import times as ratios to boto3's
	$(LOCAL_ENV) $(BIN)/python -m local.coldstart

clean:  ## remove the venv and build output
	rm -rf $(VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache
