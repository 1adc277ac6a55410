"""The map benchmark: how fast and how good the Map page's maps are on this machine.

    python -m fmnist_core embed --bench [CHECKPOINT] [--reference]

  * t-SNE of the 10,000 test images (the layer before the output of the shipped CNN, by
    default), with the settings the page uses (embed.TSNE) and, with --reference, with the
    settings it used before (embed.REFERENCE_TSNE): wall seconds, process CPU seconds, and the
    10-NN class agreement of the map — the share of each point's 10 nearest map neighbours that
    have its class, averaged (what a reader of the map sees: classes that stay together). A
    faster setting may not lose more than 0.01 of it.
  * PCA of every layer of that model: the layer's activations for the 10,000 images and the
    50-component PCA basis (the PCA map is its first two components), wall and CPU seconds:
    the median of PCA_REPEATS computations each, after one warm-up of the process (imports, the
    model's first run), as a server process that has drawn a map before.

Every figure comes with the load average when it was taken: on a shared machine a wall time is
only comparable with others taken at the same load; CPU seconds are steadier. Nothing is read
from or written to the map cache (a scratch folder), so every figure is a first computation.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from . import embed

Say = Callable[[str], None]
PCA_REPEATS = 3  # each layer's PCA is timed this often: the median is the figure


def knn_agreement(xy: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """Mean share of each point's k nearest neighbours on the map (itself left out) that have
    its label: 0.1 for a map that ignores the classes, 1.0 for one that keeps them apart."""
    from sklearn.neighbors import NearestNeighbors
    xy = np.asarray(xy, np.float64)
    labels = np.asarray(labels)
    idx = NearestNeighbors(n_neighbors=k + 1).fit(xy).kneighbors(xy, return_distance=False)[:, 1:]
    return float((labels[idx] == labels[:, None]).mean())


def _clock(fn):
    load = os.getloadavg()[0]
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, {"seconds": round(time.perf_counter() - t, 2), "cpu_seconds": round(time.process_time() - c, 2),
                 "load_avg_1min": round(load, 2)}


def bench_tsne(reduced: np.ndarray, labels: np.ndarray, settings: embed.TSNESettings) -> dict:
    """One t-SNE of the 50-D PCA coordinates with `settings`: times and 10-NN agreement."""
    xy, row = _clock(lambda: embed.run_tsne(reduced, settings))
    return {**row, "knn10_agreement": round(knn_agreement(xy, labels), 4), "settings": settings.describe()}


def bench(checkpoint: str | Path, images: np.ndarray, labels: np.ndarray, layer: str | None = None,
          reference: bool = False, pca_layers: bool = True, say: Say = lambda s: None) -> dict:
    """The whole benchmark (see the module docstring) as one dict."""
    import torch

    from .device import cpu_name
    from .models import load_model
    model = load_model(checkpoint)
    layer = layer or embed.default_layer(model)
    embed.check_request(model, layer, "tsne")
    out = {"checkpoint": str(checkpoint), "layer": layer, "points": int(len(images)),
           "cpu": cpu_name(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    with embed.scratch_cache("embed-bench-"):  # a scratch cache: every figure is computed
        if pca_layers:
            out["pca"] = []
            # the process warmed up first, as a server's is (scikit-learn imported, the model
            # run once); then each layer's median of PCA_REPEATS first computations
            embed._fit_base(embed.activations(model, embed.layer_names(model)[-1], images[:500]))
            for name in embed.layer_names(model):
                rows = sorted((_clock(lambda: embed._fit_base(embed.activations(model, name, images)))[1]
                               for _ in range(PCA_REPEATS)), key=lambda r: r["seconds"])
                row = rows[len(rows) // 2]
                out["pca"].append({"layer": name, **row, "all_seconds": [r["seconds"] for r in rows]})
                say(f"PCA of {name}: {row['seconds']} s (CPU {row['cpu_seconds']} s, load {row['load_avg_1min']}; "
                    f"median of {PCA_REPEATS}: {', '.join(str(r['seconds']) for r in rows)})")
        b = embed._fit_base(embed.activations(model, layer, images))
        runs = [("tsne", embed.TSNE)] + ([("tsne_reference", embed.REFERENCE_TSNE)] if reference else [])
        for key, settings in runs:
            out[key] = bench_tsne(b["reduced"], labels, settings)
            say(f"{key}: {out[key]}")
    if reference:
        out["knn10_agreement_change"] = round(out["tsne"]["knn10_agreement"]
                                              - out["tsne_reference"]["knn10_agreement"], 4)
    return out

