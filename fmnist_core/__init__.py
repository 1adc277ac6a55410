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
