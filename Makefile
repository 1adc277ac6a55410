# Quick start: `make run` (set up, then serve http://localhost:8501) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
REQ_HASH := $(shell sha256sum requirements.txt | cut -c1-12)
VENV ?= $(HOME)/.cache/fmnist-workbench/venv-$(REQ_HASH)
PY := $(VENV)/bin/python
PORT ?= 8501
export VENV PYTHON
# no usage data leaves the school from anything started here (fmnist_core/__init__.py sets the
# same for every process our Python starts; README "Privacy")
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export RAY_USAGE_STATS_ENABLED := 0
export STREAMLIT_BROWSER_GATHER_USAGE_STATS := false

.PHONY: setup setup-test run class mlflow-ui test test-fast models maps bench bench-train bench-embed gpu-check clean-runs optuna-dashboard reproduce

setup:
	@bash scripts/setup.sh

setup-test:
	@bash scripts/setup.sh --browser

# a laptop: this machine only (with no teacher password its single user is the teacher, so it
# must not be reachable from the network; `make class` is the only way to serve others)
run: setup
	$(PY) -m streamlit run app.py --server.port $(PORT) --server.headless true --server.address 127.0.0.1

# a class server: every address of this machine, https with a self-signed certificate (the
# camera needs https off localhost), students and a teacher (FMNIST_TEACHER_PASSWORD or
# .streamlit/secrets.toml; refused without one). Tracebacks are not shown to students.
# See README "Class server".
class: setup
	@$(PY) scripts/check_teacher_password.py
	@bash scripts/tls_cert.sh artifacts/tls
	$(PY) -m streamlit run app.py --server.port $(PORT) --server.headless true --server.address 0.0.0.0 \
	  --server.sslCertFile artifacts/tls/cert.pem --server.sslKeyFile artifacts/tls/key.pem \
	  --client.showErrorDetails none

# MLflow's own UI on the same run store (the embedded SQLite one unless FMNIST_TRACKING_URI is set)
MLFLOW_PORT ?= 5000
mlflow-ui: setup
	@uri=$${FMNIST_TRACKING_URI:-$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/artifacts/mlflow.db}}; \
	  echo "MLflow UI for $$uri on http://127.0.0.1:$(MLFLOW_PORT)"; \
	  $(VENV)/bin/mlflow ui --backend-store-uri "$$uri" --host 127.0.0.1 --port $(MLFLOW_PORT)

# the suite in TEST_WORKERS pytest-xdist processes (a test file stays in one, with its fixtures
# and servers); TEST_WORKERS=0 runs it in this process alone
TEST_WORKERS ?= 2
test: setup-test
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# everything but the browser tests
test-fast: setup
	$(PY) -m pytest -q -m "not browser"

# the shipped default models (artifacts/models/*.pt), reproducibly: see README. Then the tests
# marked `shipped` (an answer pinned to these checkpoints): a retrain that changes one fails here.
# One thread: on a busy 2-core machine a second intra-op thread mostly waits for its core.
# --watch-test: the presets train on all 60,000 images (no validation split), so the test set
# is scored at each epoch end for the Results page's curves and epoch slider; it chooses nothing.
models: setup
	$(PY) -m fmnist_core train --preset mlp-best --threads 1 --watch-test --save artifacts/models/mlp.pt
	$(PY) -m fmnist_core train --preset cnn-fast --threads 1 --watch-test --save artifacts/models/cnn.pt
	$(PY) -m fmnist_core train --preset resnet --threads 1 --watch-test --save artifacts/models/resnet.pt
	$(PY) -m fmnist_core train --preset mlp-seed000 --threads 1 --watch-test --save artifacts/models/mlp-seed000.pt
	$(MAKE) maps
	@echo "the tests pinned to the shipped checkpoints, against the new ones:"
	$(PY) -m pytest -q -m shipped

# the maps shipped with the models (artifacts/models/maps/, committed): PCA, t-SNE and UMAP of
# each shipped checkpoint's main layers, so the Map page never waits for them; maps of
# checkpoints no longer shipped are removed. ~15 minutes on a busy 2-core machine.
maps: setup
	$(PY) -m fmnist_core ship-maps

bench: setup
	$(PY) -m fmnist_core bench --out artifacts/benchmarks/latest.json

bench-train: setup
	$(PY) -m fmnist_core bench-train

# the map benchmark: t-SNE of the 10,000 test images (seconds, 10-NN class agreement, against
# the settings used before tuning) and PCA of every layer of the shipped CNN
bench-embed: setup
	$(PY) -m fmnist_core embed --bench --reference

# every GPU path in one call (on a CUDA machine; see scripts/gpu_check.py), results file in
# artifacts/benchmarks/
gpu-check: setup
	$(PY) scripts/gpu_check.py

# every run in the embedded store (not a tracking server's)
clean-runs:
	rm -rf artifacts/mlflow.db* artifacts/mlartifacts artifacts/work artifacts/cache artifacts/.slots

# optuna-dashboard on the studies' storage (FMNIST_OPTUNA_URI, else the SQLite file beside the
# embedded run store): this machine only
OPTUNA_PORT ?= 8080
optuna-dashboard: setup
	@uri=$${FMNIST_OPTUNA_URI:-sqlite:///$(CURDIR)/artifacts/optuna.db}; \
	  echo "optuna-dashboard on http://127.0.0.1:$(OPTUNA_PORT)"; \
	  $(VENV)/bin/optuna-dashboard "$$uri" --host 127.0.0.1 --port $(OPTUNA_PORT)

# the seeds' experiments as studies, their figures beside ours (a benchmark with a progress
# bar, hours of CPU; QUICK=1: 2 epochs, 1 seed each). README "Studies"
reproduce: setup
	$(PY) scripts/reproduce.py $(if $(QUICK),--quick)
