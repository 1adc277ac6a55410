# Quick start: `make run` (set up, then serve http://localhost:8501) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
REQ_HASH := $(shell sha256sum requirements.txt | cut -c1-12)
VENV ?= $(HOME)/.cache/fmnist-workbench/venv-$(REQ_HASH)
PY := $(VENV)/bin/python
PORT ?= 8501
export VENV PYTHON

.PHONY: setup setup-test run test test-fast models bench bench-train clean-runs

setup:
	@bash scripts/setup.sh

setup-test:
	@bash scripts/setup.sh --browser

run: setup
	$(PY) -m streamlit run app.py --server.port $(PORT) --server.headless true

test: setup-test
	$(PY) -m pytest -q

# everything but the browser tests
test-fast: setup
	$(PY) -m pytest -q -m "not browser"

# the shipped default models (artifacts/models/*.pt), reproducibly: see README.
# One thread: on a busy 2-core machine a second intra-op thread mostly waits for its core.
models: setup
	$(PY) -m fmnist_core train --preset mlp-best --threads 1 --save artifacts/models/mlp.pt
	$(PY) -m fmnist_core train --preset cnn-fast --threads 1 --save artifacts/models/cnn.pt

bench: setup
	$(PY) -m fmnist_core bench --out artifacts/benchmarks/latest.json

bench-train: setup
	$(PY) -m fmnist_core bench-train

clean-runs:
	rm -rf artifacts/runs/*
