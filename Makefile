SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
PIP_STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
CLUSTER := PYTHONPATH=operator:hack/cluster $(PY) -m kfncluster
KFN_CACHE ?= $(HOME)/.cache/kfn
export KUBECONFIG := $(CURDIR)/.kfn/kubeconfig
export PATH := $(KFN_CACHE)/bin:$(PATH)

help: ## List the targets.
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-16s %s\n", $$1, $$2}'

$(PIP_STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(PIP_STAMP) ## Create the virtualenv with kfn and its development tools.

up: venv ## Bring up the cluster and its Gateway, install kfn with Helm and run the example web backend.
	$(CLUSTER) install
	@echo "export KUBECONFIG=$(KUBECONFIG) PATH=$(KFN_CACHE)/bin:\$$PATH"

image: venv ## Build the kfn image from operator/Dockerfile and push it to the local registry.
	$(CLUSTER) image

release: venv ## Publish kfn's images (multi-arch indexes) and the chart (OCI) to the local registry.
	$(CLUSTER) up
	$(CLUSTER) release

cluster: venv ## Bring up the local Kubernetes cluster (idempotent; builds it the first time).
	$(CLUSTER) up

cluster-stop: venv ## Stop the local cluster, keeping its data (Functions, images) for `make cluster`.
	$(CLUSTER) stop

cluster-down: venv ## Tear the local cluster down and delete its data, leaving nothing behind.
	$(CLUSTER) down

cluster-status: venv ## Say whether the cluster runs, or what a killed run left behind.
	$(CLUSTER) status

tools: venv ## Build the tools the unit tests need (helm, promtool) into ~/.cache/kfn/bin, without a cluster.
	$(CLUSTER) tools

lint: venv ## ruff (lint and format check), mypy strict and the import layering contracts.
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

crds: venv ## Regenerate crds/ (and the chart's copy) from the pydantic models in kfn.api.
	PYTHONPATH=operator $(PY) -m kfn.api.crdgen --out crds/
	mkdir -p charts/kfn/crds && cp crds/*.yaml charts/kfn/crds/

docs: venv tools ## Regenerate docs/install.md's tables of chart values and RBAC from the chart, and docs/cli.md from kubectl kfn's help.
	$(PY) hack/chartdocs.py --helm $(KFN_CACHE)/bin/helm
	$(PY) hack/clidocs.py

fmt: venv ## Format and fix what ruff can.
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: venv ## Run every test: lint, then the cluster (built if needed), unit tests, cluster tests.
	$(MAKE) lint
	$(CLUSTER) up
	$(CLUSTER) runtime-bases
	$(VENV)/bin/pytest tests/unit
	$(VENV)/bin/pytest -m cluster tests/cluster

test-unit: venv tools ## Run the unit tests only (no cluster; helm, promtool and the runtimes' bases are made once).
	$(CLUSTER) runtime-bases
	$(VENV)/bin/pytest tests/unit

test-cluster: venv ## Run the cluster tests only.
	$(VENV)/bin/pytest -m cluster tests/cluster

bench-pod-start: cluster ## Pod start latency floor: kubectl scale 0→1 to HTTP answer, 20 trials.
	$(PY) bench/pod_start.py --trials 20

.PHONY: help venv up image release docs cluster cluster-stop cluster-down cluster-status tools lint crds fmt test test-unit test-cluster bench-pod-start
