# Two commands on a fresh machine: `make demo` and `make test`. Everything else is set up on the way.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(PY) -m uv
export UV_PYTHON_DOWNLOADS := never
export UV_COMPILE_BYTECODE := 1
export HF_HUB_OFFLINE := 1
export LANGSMITH_TRACING := false

.PHONY: demo test check unit services system tools deploy-check install evals clean softphone

$(BIN)/switchboard: pyproject.toml uv.lock
	@$(PY) -m uv --version >/dev/null 2>&1 || $(PY) -m pip install -q "uv==0.13.9"
	$(UV) sync --locked --quiet
	@touch $@

install: $(BIN)/switchboard

# The console's softphone bundle (livekit-client, pinned in orchestrator/console/web) is committed, so serving the
# console needs no Node; rebuild it after changing the npm project or its source.
softphone:
	cd orchestrator/console/web && npm ci --no-audit --no-fund && npm run build

# Start the machine's Redis and PostgreSQL if they are down (tests use the real servers on loopback).
services:
	@bash deploy/dev/services.sh

# Debian packages the tests need (flite for the local voice, chromium for the console tests).
system:
	@bash deploy/dev/system.sh

# livekit-server (pinned, built once per machine from its Go module into .tools/bin) and iproute2, for the
# tests that place calls through a real LiveKit server.
tools:
	@bash deploy/dev/tools.sh

# Render the Kubernetes manifests (deploy/k8s) with kustomize and validate every object with kubeconform against
# the schemas kept in deploy/k8s/schemas (strict; a kind without a schema fails).
deploy-check:
	@bash deploy/dev/tools.sh kustomize kubeconform
	@bash deploy/k8s/check.sh

demo: install
	$(BIN)/switchboard demo-queue

check: install
	$(BIN)/ruff format --check orchestrator agents evals tests
	$(BIN)/ruff check orchestrator agents evals tests
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo --no-cache

unit: install
	$(BIN)/pytest -m unit -q

# Two test processes: one runs the real-stack drills (tests/conftest.py, REAL_STACK_DRILLS), the other the rest.
test: install services system tools check deploy-check
	$(BIN)/pytest -m "not live" -n 2 --dist loadscope --no-loadscope-reorder

# The smoke eval suite, gated by evals/gates.yaml (non-zero exit on a failed scenario or a breached gate).
evals: install
	$(BIN)/switchboard eval run evals/suites/smoke.yaml

clean:
	rm -rf $(VENV) .switchboard .pytest_cache .mypy_cache .ruff_cache
