"""fmnist_core: everything the Fashion-MNIST Workbench computes (never imports streamlit).

The core: data (the real dataset), models (configs, presets, the layer plan, checkpoints),
train (the in-memory trainer), evaluate (metrics), preprocess (user images -> model input),
predict, device (cpu/cuda/mps), files, errors.
The run lifecycle, a room each: spec (one RunSpec), cost (the price of a job), queue (the one
dispatcher), submit (launch, stop, delete, hide), execute (the trainer side), executors/ (local,
ray), runs (the store on MLflow), roles (who may do what; it only decides); analysis (heavy
analysis as shared jobs).
Wings: twin/ (the NumPy twin), bench/ (timings), views/ (what each page shows, computed),
cli/ (`python -m fmnist_core`); the class activities: challenge, humans.

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
