"""What the Predict page shows: one prepared 28x28 input through PyTorch and the NumPy twin,
their probabilities side by side, and the preprocessing steps big enough to see.

Left out: preprocessing itself (fmnist_core.preprocess) and the model list (shared).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..data import CLASSES
from .shared import as_input, softmax


def predict_both(model, net, x: np.ndarray) -> dict[str, Any]:
    """One prepared input through PyTorch and the NumPy twin.

    The PyTorch side is fmnist_core.predict's prediction, the one the CLI's `predict` makes:
    {"label", "index", "probabilities", "top3"}. Added: "probability" (of the top class),
    "torch" and "manual" (10,) probability arrays, "manual_label", "agree" (same top class),
    "max_prob_diff".
    """
    from ..predict import predict_array
    x = as_input(x)
    result = predict_array(model, x)
    p_t = np.fromiter(result["probabilities"].values(), np.float32, len(CLASSES))
    p_m = softmax(net.forward(x[None])[0])
    k_m = int(p_m.argmax())
    return {**result, "probability": float(p_t[result["index"]]), "torch": p_t, "manual": p_m,
            "manual_label": CLASSES[k_m], "agree": result["index"] == k_m,
            "max_prob_diff": float(np.abs(p_t - p_m).max())}


def probability_table(result: dict[str, Any]):
    """The two probability vectors side by side: class, PyTorch, NumPy twin, |difference|."""
    import pandas as pd
    t, m = np.asarray(result["torch"], np.float64), np.asarray(result["manual"], np.float64)
    return pd.DataFrame({"class": list(CLASSES), "PyTorch": t, "NumPy twin": m, "|difference|": np.abs(t - m)})


def for_display(img, min_side: int = 168):
    """A preprocessing step (PIL image) big enough to see: small ones are enlarged by a whole
    factor with nearest-neighbour, so each of the model's 28x28 pixels stays a sharp square."""
    from PIL import Image
    w, h = img.size
    if max(w, h) >= min_side:
        return img
    k = max(1, min_side // max(w, h))
    return img.resize((w * k, h * k), Image.Resampling.NEAREST)


def camera_blocked(page_url: str) -> str | None:
    """Why the browser will refuse the camera on this page, or None when it may allow it.

    Browsers give pages the camera only in a secure context: https, or http on this very
    machine (localhost, 127.0.0.1, ::1). A student on http://<server>:8501 gets nothing but
    a silent failure, so the page says why and what to do."""
    from urllib.parse import urlsplit
    parts = urlsplit(page_url or "")
    host = (parts.hostname or "").lower()
    if parts.scheme == "https" or host in ("localhost", "127.0.0.1", "::1") or host.endswith(".localhost"):
        return None
    return (f"Your browser will not open the camera on {parts.scheme or 'http'}://{parts.netloc}: cameras "
            "work only on https (or on the server's own screen). Ask the teacher for the https address "
            "(`make class` serves one), or take the photo with your phone's camera app and upload it.")
