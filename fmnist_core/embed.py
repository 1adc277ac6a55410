"""A map of what a network learned: one layer's activations for the 10,000 test images,
projected to 2-D with PCA (scikit-learn), t-SNE (openTSNE) or UMAP (umap-learn).

    result = embed(checkpoint, "act_fc1", "umap", x_test, y_test, progress=callback)
    result["xy"]        # (10000, 2) float32, row i = test image i
    place(checkpoint, "act_fc1", "umap", x)  # where a new (28, 28) input lands on that map

Steps: the layer's activations (batched, no grad, flattened per image; `layer_names(model)`
lists the layers, the names of the model's plan) -> a PCA basis of at most 50 components
(`BASE_DIMS`) -> PCA's map is the first two of those components; t-SNE and UMAP run on the
50 PCA coordinates, the standard first step for wide layers (it keeps most of the variance,
drops noise, and makes the neighbour search fast). A layer of 50 values or fewer is only
rotated by that PCA, so its distances, all t-SNE and UMAP see, are unchanged.

Cache: everything is computed once per checkpoint *content* (sha256), layer and method, in
artifacts/cache/embed/ as .npz files written atomically and read with allow_pickle=False —
nothing there is ever unpickled:
  * <hash>-<layer>-base.npz   PCA mean, components and the 50-D coordinates of the test set
  * <hash>-<layer>-<method>.npz  the 2-D map (and the settings it was made with)

Placing a new input (`place`): PCA projects it with the stored mean and components. t-SNE
rebuilds openTSNE's TSNEEmbedding from the stored map and an affinity object computed from
the stored 50-D coordinates, then calls its `transform` (the optimisation of the new point
against the fixed map; the rebuilt embedding is kept in process memory). UMAP uses the fitted
umap.UMAP's `transform` when the fit happened in this process (kept in memory); a map read
from the disk cache has no fitted object (it is never pickled), and the new point is then put
at the distance-weighted mean of its 15 nearest test images' positions — the starting point
UMAP's own transform optimises from (`placement` in the result says which was used).

UMAP's numba functions compile on first use (tens of seconds); numba's on-disk cache is
pointed at artifacts/cache/numba (NUMBA_CACHE_DIR) so a later process loads them compiled.

Left out: the training images (the map is of the test set, which every page shows), and
3-D maps.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .data import ARTIFACTS, IMAGE_SIZE
from .errors import ConfigError
from .files import content_hash, write_atomic

METHODS = ("pca", "tsne", "umap")
METHOD_NAMES = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}
BASE_DIMS = 50        # PCA components kept as the input of t-SNE and UMAP
BATCH = 500           # images per forward pass
NEIGHBOURS = 15       # UMAP's n_neighbors, and the k of the k-NN placement fallback
PERPLEXITY = 30       # t-SNE's perplexity (openTSNE's default)
SEED = 0
# openTSNE on one thread: on a shared, busy 2-core machine its two threads waited for each
# other — 1,000 points took 126 s with n_jobs=2 and 20 s with n_jobs=1 (load average 9)
TSNE_JOBS = 1
CACHE_VERSION = 1     # bump when what a cache file holds changes
# a layer wider than WIDE values per image is first projected at random (a sparse random
# projection, seeded: Johnson-Lindenstrauss keeps distances) to PROJECTED values, batch by
# batch, so a 2,048-channel conv map (1.6 M values per image, 64 GB for the test set) costs a
# few hundred MB; the page says so
WIDE = 8192
PROJECTED = 2048
BATCH_VALUES = 1 << 25  # values per forward batch at most (128 MB of float32)
Progress = Callable[[float, str], None]  # fraction done in [0, 1], what is happening


def cache_dir() -> Path:
    return Path(os.environ.get("FMNIST_ARTIFACTS", ARTIFACTS)) / "cache" / "embed"


# set before umap (and with it numba) is imported: compiled functions are kept on disk
os.environ.setdefault("NUMBA_CACHE_DIR", str(cache_dir().parent / "numba"))


# --- checking the request ----------------------------------------------------------------

def layer_names(model) -> list[str]:
    """The layers a map can be made of: every layer of the plan except the input normalisation
    (which is the input, shifted)."""
    return [s.name for s in model.plan if s.kind != "normalize"]


def check_request(model, layer: str, method: str) -> None:
    """One sentence for an unknown method or a layer the model does not have."""
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    names = layer_names(model)
    if layer not in names:
        raise ConfigError(f"this model has no layer {layer!r}; its layers are {', '.join(names)}")


def default_layer(model) -> str:
    """The penultimate layer: the last one before the output layer, dropout skipped (an
    identity at inference) — the features the classifier reads."""
    before = [s.name for s in model.plan if s.kind not in ("normalize", "dropout") and s.name != "out"]
    return before[-1] if before else "out"


# --- checkpoint identity ---------------------------------------------------------------------

def checkpoint_hash(path: str | Path) -> str:
    """sha256 of the checkpoint's bytes (first 16 hex digits; files.content_hash)."""
    return content_hash(path)[:16]


def cache_path(digest: str, layer: str, what: str) -> Path:
    return cache_dir() / f"{digest}-{layer}-{what}.npz"


def _save(path: Path, **arrays) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would add ".npz" to a bare name
            np.savez(f, version=np.int64(CACHE_VERSION), **arrays)
    write_atomic(path, write)


def _load(path: Path) -> dict | None:
    """The arrays of a cache file, or None when it is missing, unreadable or of another version."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError):
        return None
    return data if int(data.get("version", -1)) == CACHE_VERSION else None


# --- activations and the PCA basis ---------------------------------------------------------

def reduced_width(width: int) -> int:
    """Values per image kept for the map: the layer's own, or PROJECTED for a layer wider than WIDE."""
    return width if width <= WIDE else PROJECTED


def batch_rows(width: int) -> int:
    """Images per forward pass: BATCH, fewer for wide layers (at most BATCH_VALUES values)."""
    return max(1, min(BATCH, BATCH_VALUES // max(width, 1)))


def _projection(width: int):
    from sklearn.random_projection import SparseRandomProjection
    rp = SparseRandomProjection(n_components=PROJECTED, dense_output=True, random_state=SEED)
    return rp.fit(np.zeros((1, width), np.float32))


def layer_width(model, layer: str) -> int:
    import torch
    names = [n for n, _ in model.named_children()]
    stop = names.index(layer) + 1
    with torch.inference_mode():
        h = torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE)
        for module in list(model.children())[:stop]:
            h = module(h)
    return int(h.numel())


def activations(model, layer: str, images: np.ndarray, progress: Progress | None = None) -> np.ndarray:
    """(N, features) float32: `layer`'s output for uint8 (N, 28, 28) or float [0, 1] images;
    for a layer wider than WIDE, its sparse random projection to PROJECTED values.

    Runs the model's children in order up to `layer` (nn.Sequential's own forward, no hooks:
    the model may be shared with other sessions)."""
    import torch
    names = [n for n, _ in model.named_children()]
    stop = names.index(layer) + 1
    x = np.asarray(images)
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    width = layer_width(model, layer)
    rows = batch_rows(width)
    project = _projection(width) if reduced_width(width) < width else None
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), rows):
            h = torch.from_numpy(x[i:i + rows].astype(np.float32) / scale).reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE)
            for module in list(model.children())[:stop]:
                h = module(h)
            a = h.reshape(len(h), -1).float().numpy()
            out.append(project.transform(a).astype(np.float32) if project is not None else a)
            if progress:
                progress(min(1.0, (i + rows) / len(x)), "activations"
                         + (f" (projected from {width:,} to {PROJECTED:,} values)" if project is not None else ""))
    return np.concatenate(out)


def _fit_base(acts: np.ndarray) -> dict[str, np.ndarray]:
    from sklearn.decomposition import PCA
    n = min(BASE_DIMS, acts.shape[1], acts.shape[0])
    # up to 2,048 values per image: the eigenvectors of the (width x width) covariance, one
    # pass over the data (5x faster than an SVD of the 10,000 rows); wider layers (conv maps):
    # randomized SVD
    solver = "covariance_eigh" if acts.shape[1] <= 2048 else "randomized"
    pca = PCA(n_components=n, svd_solver=solver, random_state=SEED)
    reduced = pca.fit_transform(acts).astype(np.float32)
    return {"mean": pca.mean_.astype(np.float32), "components": pca.components_.astype(np.float32),
            "explained": pca.explained_variance_ratio_.astype(np.float32), "reduced": reduced,
            "width": np.int64(acts.shape[1])}  # the values PCA saw (PROJECTED for a projected layer)


def base(model, digest: str, layer: str, images: np.ndarray, progress: Progress | None = None) -> dict:
    """The layer's PCA basis and the test set's 50-D coordinates, from the cache or computed."""
    path = cache_path(digest, layer, "base")
    cached = _load(path)
    if cached is not None and len(cached["reduced"]) == len(images):
        return cached
    acts = activations(model, layer, images, progress=(lambda f, s: progress(0.8 * f, s)) if progress else None)
    if progress:
        progress(0.85, "PCA")
    data = _fit_base(acts)
    _save(path, **data)
    return data


# --- the 2-D maps ---------------------------------------------------------------------------

_fitted: dict[tuple, object] = {}   # (digest, layer, method) -> fitted object, this process only
_fitted_lock = threading.Lock()


def _tsne(reduced: np.ndarray, progress: Progress | None) -> np.ndarray:
    from openTSNE import TSNE
    # openTSNE's default is 250 + 500 iterations; with its learning rate of N/12 a 10k map has
    # settled after 250 + 250 (the late phase is the slow one: its FFT grid grows with the map)
    early, late = 250, 250

    class Report:  # openTSNE calls back every `callbacks_every_iters` iterations of each phase
        def __init__(self):
            self.done = 0

        def __call__(self, iteration, error, embedding):
            self.done += 25
            if progress:
                progress(min(1.0, self.done / (early + late)), "t-SNE")
            return False

    tsne = TSNE(perplexity=PERPLEXITY, n_jobs=TSNE_JOBS, random_state=SEED,
                negative_gradient_method="auto", early_exaggeration_iter=early,  # auto: FFT from 10,000 points, Barnes-Hut below, n_iter=late,
                callbacks=Report(), callbacks_every_iters=25)
    return np.asarray(tsne.fit(reduced), dtype=np.float32)


def _umap(reduced: np.ndarray, key: tuple, progress: Progress | None) -> np.ndarray:
    if progress:
        progress(0.05, "UMAP: loading (numba compiles once, then reads its cache)")
    import umap
    if progress:
        progress(0.2, "UMAP: neighbours and layout")
    reducer = umap.UMAP(n_neighbors=NEIGHBOURS, n_components=2, random_state=SEED)
    xy = np.asarray(reducer.fit_transform(reduced), dtype=np.float32)
    with _fitted_lock:
        _fitted[key] = reducer
    return xy


def embed(checkpoint: str | Path, layer: str, method: str, images: np.ndarray, labels: np.ndarray,
          model=None, progress: Progress | None = None) -> dict:
    """The 2-D map of `layer` for `images` (the test set), from the disk cache or computed once.

    Returns {"xy": (N, 2) float32, "labels": (N,) int, "layer", "method", "width" (values per
    image PCA saw), "layer_width" (values per image in the layer: more when it was projected), "base_dims", "explained" (variance share of the two PCA axes),
    "cached": bool (True when nothing was computed), "seconds"}."""
    from .models import load_model
    t0 = time.perf_counter()
    model = model if model is not None else load_model(checkpoint)
    check_request(model, layer, method)
    digest = checkpoint_hash(checkpoint)
    path = cache_path(digest, layer, method)
    cached = _load(path)
    b = None
    if cached is None or len(cached["xy"]) != len(images):
        stage = (lambda lo, hi: (lambda f, s: progress(lo + (hi - lo) * f, s))) if progress else (lambda lo, hi: None)
        b = base(model, digest, layer, images, progress=stage(0.0, 0.15 if method != "pca" else 1.0))
        if method == "pca":
            xy = b["reduced"][:, :2].copy()
            if xy.shape[1] < 2:  # a layer of one value: put it on a line
                xy = np.column_stack([xy[:, 0], np.zeros(len(xy), np.float32)])
        elif method == "tsne":
            xy = _tsne(b["reduced"], stage(0.15, 1.0))
        else:
            xy = _umap(b["reduced"], (digest, layer, method), stage(0.15, 1.0))
        _save(path, xy=xy.astype(np.float32))
        computed = True
    else:
        xy = cached["xy"]
        computed = False
    if progress:
        progress(1.0, "done")
    if b is None:
        b = _load(cache_path(digest, layer, "base")) or {}
    explained = b.get("explained", np.zeros(2, np.float32))
    return {"xy": xy, "labels": np.asarray(labels).astype(np.int64), "layer": layer, "method": method,
            "checkpoint_hash": digest, "width": int(b.get("width", 0)),
            "layer_width": layer_width(model, layer),
            "base_dims": int(b["components"].shape[0]) if "components" in b else 0,
            "explained": [float(v) for v in explained[:2]], "cached": not computed,
            "seconds": time.perf_counter() - t0}


def is_cached(checkpoint: str | Path, layer: str, method: str) -> bool:
    """Whether `embed` would read this map from the disk cache (no computing)."""
    return cache_path(checkpoint_hash(checkpoint), layer, method).is_file()


# --- placing a new input on a map ----------------------------------------------------------

def _knn_place(reduced: np.ndarray, xy: np.ndarray, q: np.ndarray, k: int = NEIGHBOURS) -> np.ndarray:
    d = np.sqrt(((reduced - q[None]) ** 2).sum(1))
    near = np.argpartition(d, k)[:k]
    w = 1.0 / (d[near] + 1e-6)
    return (xy[near] * w[:, None]).sum(0) / w.sum()


def _tsne_embedding(digest: str, layer: str, b: dict, xy: np.ndarray):
    """openTSNE's TSNEEmbedding rebuilt from stored arrays (the map + the 50-D coordinates)."""
    key = (digest, layer, "tsne")
    with _fitted_lock:
        if key in _fitted:
            return _fitted[key]
    from openTSNE import TSNEEmbedding, affinity
    aff = affinity.PerplexityBasedNN(b["reduced"], perplexity=PERPLEXITY, n_jobs=TSNE_JOBS,
                                     random_state=SEED)
    emb = TSNEEmbedding(xy.astype(np.float64), aff, negative_gradient_method="auto", random_state=SEED)
    with _fitted_lock:
        _fitted[key] = emb
    return emb


def place(checkpoint: str | Path, layer: str, method: str, x: np.ndarray, model=None) -> dict:
    """Where one input (28x28 floats in [0, 1], or uint8) lands on a map made by `embed`.

    Returns {"xy": (2,) float, "placement": "pca" | "tsne transform" | "umap transform" |
    "nearest neighbours"}. The map must exist (call `embed` first)."""
    from .models import load_model
    model = model if model is not None else load_model(checkpoint)
    check_request(model, layer, method)
    digest = checkpoint_hash(checkpoint)
    b = _load(cache_path(digest, layer, "base"))
    m = _load(cache_path(digest, layer, method))
    if b is None or m is None:
        raise ConfigError(f"no {METHOD_NAMES[method]} map of {layer} for this checkpoint yet; make it first")
    act = activations(model, layer, np.asarray(x)[None])
    q = ((act - b["mean"]) @ b["components"].T).astype(np.float32)
    if method == "pca":
        xy = q[0, :2] if q.shape[1] >= 2 else np.array([q[0, 0], 0.0], np.float32)
        return {"xy": np.asarray(xy, np.float64), "placement": "pca"}
    if method == "tsne":
        emb = _tsne_embedding(digest, layer, b, m["xy"])
        return {"xy": np.asarray(emb.transform(q), np.float64)[0], "placement": "tsne transform"}
    with _fitted_lock:
        reducer = _fitted.get((digest, layer, "umap"))
    if reducer is not None:
        return {"xy": np.asarray(reducer.transform(q), np.float64)[0], "placement": "umap transform"}
    return {"xy": _knn_place(b["reduced"], m["xy"], q[0]).astype(np.float64), "placement": "nearest neighbours"}
