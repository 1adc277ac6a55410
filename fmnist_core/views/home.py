"""What the Home / Data page shows: sample pictures of each class, the mean image of each
class, and the class balance of the two splits.

Left out: where the data came from, the shipped models, pictures as crisp tiles (shared:
the sidebar and other pages show them too).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..data import CLASSES, NUM_CLASSES, FashionMNIST, class_counts


def sample_indices(y: np.ndarray, per_class: int = 10, seed: int = 0) -> np.ndarray:
    """(10, per_class) indices into y: a seeded random pick of each class."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.choice(np.flatnonzero(y == k), per_class, replace=False)
                     for k in range(NUM_CLASSES)])


def mean_images(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(10, 28, 28) float32 in [0, 255]: the average image of each class."""
    return np.stack([x[y == k].mean(axis=0, dtype=np.float64) for k in range(NUM_CLASSES)]).astype(np.float32)


def demo_words() -> str:
    """What Train opens on, for the first step: the demo preset's name, layers and epochs."""
    from ..models import DEMO_PRESET, preset
    p = preset(DEMO_PRESET)
    m, epochs = p["model"], p["train"]["epochs"]
    convs = len(getattr(m, "channels", ()))
    whiten = " after a fixed patch-whitening layer" if getattr(m, "whiten", 0) else ""
    return f"*{DEMO_PRESET}* ({convs} conv layers with batchnorm{whiten}, {epochs} epochs: about 93% of the test images)"


def class_balance(ds: FashionMNIST) -> pd.DataFrame:
    return pd.DataFrame({"class": list(CLASSES), "train": class_counts(ds.y_train),
                         "test": class_counts(ds.y_test)})
