"""fmnist_core: everything the Fashion-MNIST Workbench computes (never imports streamlit).

Modules: data (the real dataset), models (configs, presets, checkpoints),
train (the in-memory trainer), evaluate (metrics), runs (the run registry),
jobs (training as background processes), twin (the NumPy twin), bench
(timings), preprocess (user images -> model input), device (cpu/cuda/mps).
Packages: views (what each dashboard page shows, computed), cli (`python -m fmnist_core`).
"""
from .data import CLASSES
from .errors import WorkbenchError

__all__ = ["CLASSES", "WorkbenchError", "load_model"]


def __getattr__(name):
    # torch is imported only when a model is needed: `fmnist_core.data` stays light
    if name == "load_model":
        from .models import load_model
        return load_model
    raise AttributeError(name)
