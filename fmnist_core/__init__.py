"""fmnist_core: everything the Fashion-MNIST Workbench computes (never imports streamlit).

Modules: data (the real dataset), models (configs, presets, checkpoints),
train (the in-memory trainer), evaluate (metrics), runs (the run registry),
jobs (training as background processes), twin (the NumPy twin), bench
(timings), preprocess (user images -> model input), device (cpu/cuda/mps).
Packages: views (what each dashboard page shows, computed), cli (`python -m fmnist_core`).

Importing this package turns usage telemetry off for this process and every process it
starts (trainers, Ray, an MLflow server): a tool for classes of minors sends nothing anywhere.
Every entry point (app.py, `python -m fmnist_core`, the trainers, the tests) imports it first;
the Makefile exports the same for what it starts without Python of ours (`mlflow ui`).
"""
import os as _os

# the names each library reads (checked in the installed sources): MLflow's client and server
# (mlflow/telemetry/utils.py: MLFLOW_DISABLE_TELEMETRY, or DO_NOT_TRACK == "true"), Ray's usage
# stats (ray/_common/usage/usage_constants.py), Streamlit's (also off in .streamlit/config.toml)
TELEMETRY_OFF = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
}
for _k, _v in TELEMETRY_OFF.items():
    # forced, not a default: an inherited MLFLOW_DISABLE_TELEMETRY=false must not turn it on
    _os.environ[_k] = _v
from .data import CLASSES
from .errors import WorkbenchError

__all__ = ["CLASSES", "WorkbenchError", "load_model"]


def __getattr__(name):
    # torch is imported only when a model is needed: `fmnist_core.data` stays light
    if name == "load_model":
        from .models import load_model
        return load_model
    raise AttributeError(name)
