"""Predict garments from user images: preprocess (preprocess.py) + one forward pass.

`predict_one(model, image)` and `predict_images(model, images)` take anything `preprocess`
takes (bytes, path, upload, PIL image, array) and return plain JSON-ready dicts:

    {"label": "Sneaker", "index": 7, "probabilities": {class name: p, ...},
     "top3": [{"label": ..., "index": ..., "probability": ...}, x3]}

`predict_array` skips preprocessing for an already prepared 28x28 input (the dashboard shows
the preprocessing steps, then predicts from the same array). `default_model_path()` is the
shipped CNN, artifacts/models/cnn.pt.

Deliberately left out: model caching (the dashboard keeps models in st.cache_resource, the CLI
loads once per call) and any "not a garment" detection — a softmax always picks one of the
ten classes, so a cat photo still gets a garment label; the probabilities show how sure it is.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from .data import ARTIFACTS, CLASSES, IMAGE_SIZE
from .errors import CheckpointError, ImageError
from .preprocess import ImageInput, preprocess


def default_model_path() -> Path:
    """The shipped default model (a CNN trained on the full training set)."""
    return ARTIFACTS / "models" / "cnn.pt"


def load_default_model(device: str = "cpu"):
    from .models import load_model
    path = default_model_path()
    if not path.is_file():
        raise CheckpointError(f"the shipped model {path} is missing; pass --model CHECKPOINT or train "
                              "one: python -m fmnist_core train --preset cnn-seed003 --save " + str(path))
    return load_model(path, device=device)


SMALL_BATCH = 64  # up to this many images run on one thread (see one_thread_for_few)
_threads_lock = threading.Lock()


@contextmanager
def one_thread_for_few(n: int):
    """Run the block on one torch thread when it handles n <= SMALL_BATCH images.

    A few images run faster on one thread: on a busy CPU the intra-op thread pool waits for
    its second core, and one 28x28 image took 50 ms instead of 1 ms. torch's thread count is
    process-wide, so it is changed under a lock and put back at once. (Also used by
    views.inside, which runs one image layer by layer.)"""
    if n > SMALL_BATCH or torch.get_num_threads() == 1:
        yield
        return
    with _threads_lock:
        prev = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(prev)


def _result(probs: np.ndarray) -> dict:
    order = np.argsort(-probs, kind="stable")
    return {
        "label": CLASSES[int(order[0])],
        "index": int(order[0]),
        "probabilities": {c: float(p) for c, p in zip(CLASSES, probs)},
        "top3": [{"label": CLASSES[int(k)], "index": int(k), "probability": float(probs[k])}
                 for k in order[:3]],
    }


@torch.inference_mode()
def predict_arrays(model: torch.nn.Module, arrays: np.ndarray | Iterable[np.ndarray]) -> list[dict]:
    """Prepared inputs, (N, 28, 28) or a list of (28, 28) float32 in [0, 1] -> one dict each."""
    x = np.asarray(list(arrays) if not isinstance(arrays, np.ndarray) else arrays, dtype=np.float32)
    if x.ndim == 2:
        x = x[None]
    if x.size == 0:
        return []
    if x.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ImageError(f"a model input must be 28×28, got {x.shape[-2:]}; run preprocess() first")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()  # dropout off, batchnorm running stats: one image must not depend on the batch
    try:
        with one_thread_for_few(len(x) if device.type == "cpu" else SMALL_BATCH + 1):
            logits = model(torch.from_numpy(x).reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE).to(device))
    finally:
        model.train(was_training)
    probs = logits.float().softmax(1).cpu().numpy()
    return [_result(p) for p in probs]


def predict_array(model: torch.nn.Module, x: np.ndarray) -> dict:
    """One prepared (28, 28) input -> its prediction dict."""
    return predict_arrays(model, np.asarray(x)[None])[0]


def predict_images(model: torch.nn.Module, images: Iterable[ImageInput]) -> list[dict]:
    """Raw images -> one prediction dict each, in one batch. A bad image raises ImageError
    naming its position; callers that want per-image errors preprocess themselves (cli/predict.py)."""
    arrays = []
    for i, im in enumerate(images):
        try:
            arrays.append(preprocess(im))
        except ImageError as exc:
            raise ImageError(f"image {i + 1}: {exc}") from None
    return predict_arrays(model, arrays)


def predict_one(model: torch.nn.Module, image: ImageInput) -> dict:
    """One raw image -> {"label", "index", "probabilities", "top3"}; ImageError if unusable."""
    return predict_array(model, preprocess(image))
