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

Shipped maps: the models shipped in artifacts/models/ carry their maps (PCA, t-SNE and UMAP of
their main layers, `main_layers`) in artifacts/models/maps/<hash>-<layer>-<method>.npz, made by
`make maps` (fmnist_core.maps_ship) and committed to git: float16 coordinates of the 10,000 test
points and the few numbers the page shows, read with allow_pickle=False. `embed` and
`is_cached` look there after the cache, by the same checkpoint content hash, so a retrained
checkpoint never gets an old map; a new run's maps are computed (a dispatcher job).

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

import contextlib
import functools
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .data import ARTIFACTS, IMAGE_SIZE, PROJECT_ROOT
from .errors import ConfigError
from .files import content_hash, write_atomic

METHODS = ("pca", "tsne", "umap")
METHOD_NAMES = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}
BASE_DIMS = 50        # PCA components kept as the input of t-SNE and UMAP
BATCH = 500           # images per forward pass
NEIGHBOURS = 15       # UMAP's n_neighbors, and the k of the k-NN placement fallback
PERPLEXITY = 30       # t-SNE's perplexity (openTSNE's default)
SEED = 0
CACHE_VERSION = 1     # bump when what a cache file holds changes
# a layer wider than WIDE values per image is first projected at random (a sparse random
# projection, seeded: Johnson-Lindenstrauss keeps distances) to PROJECTED values, batch by
# batch, so a 2,048-channel conv map (1.6 M values per image, 64 GB for the test set) costs a
# few hundred MB; the page says so
WIDE = 8192
PROJECTED = 2048
BATCH_VALUES = 1 << 25  # values per forward batch at most (128 MB of float32)
Progress = Callable[[float, str], None]  # fraction done in [0, 1], what is happening


@dataclass(frozen=True)
class TSNESettings:
    """How openTSNE makes a map (perplexity 30, PCA initialisation and its default learning
    rate N/12 throughout). Tuned with `python -m fmnist_core embed --bench --reference` against
    the 10-NN class agreement of the map (fmnist_core.embed_bench)."""
    # iterations, tuned on the shipped CNN's act_fc1 (10,000 test images; 10-NN class agreement
    # of the map, `embed --bench`): after 125 exaggerated iterations the clusters have formed and
    # 50 more settle them (0.8917); the reference 250 + 250 ended at 0.8903, and 250 + 500 at
    # 0.8903. Late iterations are the dear ones (their FFT grid grows as the map spreads: the
    # last 250 of 500 took 70% of the CPU time), so the late phase stops at 150
    early_iter: int = 125       # early exaggeration phase: clusters form
    late_iter: int = 150        # the rest: clusters spread out
    # "exact": every distance of the 10,000 x 50 coordinates (one matrix product, ~1 s of CPU)
    # finds the 90 neighbours of perplexity 30; openTSNE's "auto" picks Annoy's approximate
    # search from 1,000 points, which took 4-19 s of CPU here for the same 10,000 points
    neighbors: str = "exact"
    # threads: None = as many as the load average leaves idle (at least one): on a quiet
    # 2-core machine two, on a busy one one — two threads fighting others for the cores waited
    # for each other (1,000 points: 126 s with n_jobs=2, 20 s with 1, at load average 9)
    n_jobs: int | None = None
    negative_gradient_method: str = "fft"   # FFT-interpolated repulsion: linear in N

    def jobs(self) -> int:
        if self.n_jobs is not None:
            return self.n_jobs
        cpus = os.cpu_count() or 1
        return max(1, min(cpus, int(cpus - os.getloadavg()[0] + 0.5)))

    def describe(self) -> dict:
        return {"early_iter": self.early_iter, "late_iter": self.late_iter, "neighbors": self.neighbors,
                "n_jobs": self.jobs(), "negative_gradient_method": self.negative_gradient_method}


# the settings the page used before they were tuned (the benchmark's reference)
REFERENCE_TSNE = TSNESettings(early_iter=250, late_iter=250, neighbors="auto", n_jobs=1,
                              negative_gradient_method="auto")
TSNE = TSNESettings()


def cache_dir() -> Path:
    return Path(os.environ.get("FMNIST_ARTIFACTS", ARTIFACTS)) / "cache" / "embed"


@contextlib.contextmanager
def scratch_cache(prefix: str):
    """An empty, throwaway cache for the block (cache_dir() under a temporary FMNIST_ARTIFACTS,
    set back after): every map made inside is computed from nothing (the map benchmark, ship-maps)."""
    old = os.environ.get("FMNIST_ARTIFACTS")
    with tempfile.TemporaryDirectory(prefix=prefix) as scratch:
        os.environ["FMNIST_ARTIFACTS"] = scratch
        try:
            yield Path(scratch)
        finally:
            if old is None:
                os.environ.pop("FMNIST_ARTIFACTS", None)
            else:
                os.environ["FMNIST_ARTIFACTS"] = old


# set before umap (and with it numba) is imported: compiled functions are kept on disk
os.environ.setdefault("NUMBA_CACHE_DIR", str(cache_dir().parent / "numba"))


def shipped_dir() -> Path:
    """Where the shipped models' maps are (FMNIST_SHIPPED_MAPS overrides it: the tests that must
    compute a map of a shipped model point it at an empty folder)."""
    return Path(os.environ.get("FMNIST_SHIPPED_MAPS", PROJECT_ROOT / "artifacts" / "models" / "maps"))


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


def main_layers(model) -> list[str]:
    """The layers a shipped model carries maps of: the stage before the penultimate layer (the
    last convolution stage of a CNN or ResNet, an MLP's first hidden layer), the penultimate
    layer (`default_layer`, the page's default) and the logits."""
    plan = [s for s in model.plan if s.kind != "normalize"]
    names = [s.name for s in plan]
    penultimate = default_layer(model)
    stages = [s.name for s in plan[:names.index(penultimate)] if s.kind in ("act", "resblock")]
    return stages[-1:] + [penultimate] + (["out"] if penultimate != "out" else [])


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


def shipped_path(digest: str, layer: str, method: str) -> Path:
    return shipped_dir() / f"{digest}-{layer}-{method}.npz"


def load_shipped(digest: str, layer: str, method: str) -> dict | None:
    """A shipped map (`xy` as float32 again, `explained`, `width`, `base_dims`), or None."""
    data = _load(shipped_path(digest, layer, method))
    if data is None:
        return None
    data["xy"] = data["xy"].astype(np.float32)
    return data


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


@functools.lru_cache(maxsize=4)
def _projection(width: int):
    """The seeded sparse random projection of a `width`-value layer to PROJECTED values, as the
    (width, PROJECTED) CSR matrix to multiply by: SparseRandomProjection's own matrix, applied as
    dense @ sparse (2.2x faster here than its `transform`, which goes through the transpose).
    Kept: drawing it took 0.7 s for the shipped CNN's conv1 (25,088 values), each call."""
    from sklearn.random_projection import SparseRandomProjection
    rp = SparseRandomProjection(n_components=PROJECTED, dense_output=True, random_state=SEED)
    return rp.fit(np.zeros((1, width), np.float32)).components_.T.tocsr().astype(np.float32)


def _in_memory_order(project, shape: tuple[int, ...]):
    """The projection's rows put in the order a channels_last (C, H, W) map lies in memory
    (H, W, C): that map times these rows is the (C, H, W) flatten times `project`, the same
    numbers, without a transposing copy of every batch (0.5 s of the shipped CNN's conv1)."""
    c, h, w = shape
    return project[np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).ravel()]


def _product(a: np.ndarray, matrix, pool, workers: int) -> np.ndarray:
    """a @ matrix (dense @ sparse), its rows split over `workers` threads of the pool: SciPy's
    sparse product lets go of the GIL for part of its work (1.2 s -> 0.8 s for conv1 on 2 threads)."""
    bounds = np.linspace(0, len(a), min(workers, len(a)) + 1).astype(int)
    return np.concatenate(list(pool.map(lambda se: a[se[0]:se[1]] @ matrix, zip(bounds[:-1], bounds[1:]))))


def _runner(model):
    """(module list, precision, memory format) the layer's activations are computed with. Conv
    models run as a channels_last copy (the model itself may be shared with other sessions), on
    channels_last images (one channel: only the strides say which format they are), under the trainer's
    own autocast choice (device.resolve_precision: bf16 where the CPU does it fast): the shipped
    CNN's 10,000 test images took 2.6 s in fp32, 0.4 s so (AMD EPYC, 2 threads); a map keeps
    its shape to well within bf16's 3 significant digits."""
    import copy

    import torch

    from .device import resolve_precision
    kind = getattr(getattr(model, "config", None), "kind", "")
    precision = resolve_precision("auto", torch.device("cpu"), kind)
    if kind not in ("cnn", "resnet"):
        return list(model.children()), precision, torch.contiguous_format
    model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    return list(model.children()), precision, torch.channels_last


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
    from concurrent.futures import ThreadPoolExecutor
    from contextlib import nullcontext

    import torch

    from .device import autocast
    names = [n for n, _ in model.named_children()]
    stop = names.index(layer) + 1
    x = np.asarray(images)
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    width = layer_width(model, layer)
    rows = batch_rows(width)
    project = _projection(width) if reduced_width(width) < width else None
    modules, precision, memory_format = _runner(model)
    out = np.empty((len(x), reduced_width(width)), np.float32)  # filled in place: no concatenation
    workers = max(1, torch.get_num_threads())
    pool = ThreadPoolExecutor(workers) if project is not None else None
    in_memory_order = False  # decided on the first batch, kept for all (a placed input matches the map)
    with pool or nullcontext(), torch.inference_mode(), autocast(torch.device("cpu"), precision):
        for i in range(0, len(x), rows):
            h = torch.from_numpy(x[i:i + rows].astype(np.float32) / scale).reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE)
            h = h.contiguous(memory_format=memory_format)
            for module in modules[:stop]:
                h = module(h)
            n = len(h)
            if project is None:  # the (C, H, W) order of the plan's flatten, whatever the memory format
                torch.from_numpy(out[i:i + n]).copy_(h.reshape(n, -1))  # to float32 and that order in one pass
            else:
                if i == 0 and h.dim() == 4 and h.is_contiguous(memory_format=torch.channels_last):
                    in_memory_order, project = True, _in_memory_order(project, tuple(h.shape[1:]))
                # (H, W, C) order: a view of a channels_last map, and right (a copy) for any other
                flat = h.permute(0, 2, 3, 1).reshape(n, -1) if in_memory_order else h.reshape(n, -1)
                out[i:i + n] = _product(flat.float().numpy(), project, pool, workers)
            if progress:
                progress(min(1.0, (i + rows) / len(x)), "activations"
                         + (f" (projected from {width:,} to {PROJECTED:,} values)" if project is not None else ""))
    return out


def _fit_base(acts: np.ndarray) -> dict[str, np.ndarray]:
    from sklearn.decomposition import PCA
    n = min(BASE_DIMS, acts.shape[1], acts.shape[0])
    # up to 1,024 values per image: the eigenvectors of the (width x width) covariance, one
    # pass over the data. Wider (conv maps, projected layers): randomized SVD with 2 power
    # iterations, not scikit-learn's 7 ("auto"). Against an exact PCA of the shipped CNN's
    # layers (2,048 to 6,272 values) the two axes of the PCA map agree to a correlation of
    # 1.00000 and the 50 components t-SNE and UMAP start from keep 99.0-99.7% of the exact
    # ones' variance, in 0.3-0.8 s instead of 0.9-2.5 s (AMD EPYC, 2 threads; covariance_eigh:
    # 1.2-26 s)
    wide = acts.shape[1] > 1024
    pca = PCA(n_components=n, svd_solver="randomized" if wide else "covariance_eigh",
              iterated_power=2 if wide else "auto", random_state=SEED)
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


def run_tsne(reduced: np.ndarray, settings: TSNESettings = TSNE, progress: Progress | None = None) -> np.ndarray:
    """The t-SNE map (N, 2) float32 of the 50-D PCA coordinates."""
    from openTSNE import TSNE as OpenTSNE
    total = settings.early_iter + settings.late_iter

    class Report:  # openTSNE calls back every `callbacks_every_iters` iterations of each phase
        def __init__(self):
            self.done = 0

        def __call__(self, iteration, error, embedding):
            self.done += 25
            if progress:
                progress(min(1.0, self.done / total), "t-SNE")
            return False

    tsne = OpenTSNE(perplexity=PERPLEXITY, n_jobs=settings.jobs(), random_state=SEED, initialization="pca",
                    neighbors=settings.neighbors, negative_gradient_method=settings.negative_gradient_method,
                    early_exaggeration_iter=settings.early_iter, n_iter=settings.late_iter,
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
          model=None, progress: Progress | None = None, shipped: bool = True) -> dict:
    """The 2-D map of `layer` for `images` (the test set), from the disk cache or computed once.

    Returns {"xy": (N, 2) float32, "labels": (N,) int, "layer", "method", "width" (values per
    image PCA saw), "layer_width" (values per image in the layer: more when it was projected), "base_dims", "explained" (variance share of the two PCA axes),
    "cached": bool (True when nothing was computed), "shipped": bool (read from the map shipped
    with the model; `shipped=False` ignores those, to make them), "seconds"}."""
    from .models import load_model
    t0 = time.perf_counter()
    model = model if model is not None else load_model(checkpoint)
    check_request(model, layer, method)
    digest = checkpoint_hash(checkpoint)
    path = cache_path(digest, layer, method)
    cached = _load(path)
    ship = None
    if (cached is None or len(cached["xy"]) != len(images)) and shipped:
        ship = load_shipped(digest, layer, method)
        if ship is not None and len(ship["xy"]) == len(images):
            cached = ship
        else:
            ship = None
    b = ship
    if cached is None or len(cached["xy"]) != len(images):
        stage = (lambda lo, hi: (lambda f, s: progress(lo + (hi - lo) * f, s))) if progress else (lambda lo, hi: None)
        b = base(model, digest, layer, images, progress=stage(0.0, 0.15 if method != "pca" else 1.0))
        if method == "pca":
            xy = b["reduced"][:, :2].copy()
            if xy.shape[1] < 2:  # a layer of one value: put it on a line
                xy = np.column_stack([xy[:, 0], np.zeros(len(xy), np.float32)])
        elif method == "tsne":
            xy = run_tsne(b["reduced"], TSNE, stage(0.15, 1.0))
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
            "base_dims": (int(b["base_dims"]) if "base_dims" in b  # a shipped map says it
                          else int(b["components"].shape[0]) if "components" in b else 0),
            "explained": [float(v) for v in explained[:2]], "cached": not computed,
            "shipped": ship is not None, "seconds": time.perf_counter() - t0}


def is_cached(checkpoint: str | Path, layer: str, method: str) -> bool:
    """Whether `embed` would read this map from the disk cache (no computing)."""
    digest = checkpoint_hash(checkpoint)
    return cache_path(digest, layer, method).is_file() or shipped_path(digest, layer, method).is_file()


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
    aff = affinity.PerplexityBasedNN(b["reduced"], perplexity=PERPLEXITY, n_jobs=TSNE.jobs(),
                                     method=TSNE.neighbors, random_state=SEED)
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
    m = _load(cache_path(digest, layer, method)) or load_shipped(digest, layer, method)
    if m is None:
        raise ConfigError(f"no {METHOD_NAMES[method]} map of {layer} for this checkpoint yet; make it first")
    b = _load(cache_path(digest, layer, "base"))
    if b is None:
        # a shipped map comes without its PCA basis (1 MB a layer in git): the first placement
        # on it makes the basis once (the layer's activations and PCA: seconds), cached after
        from .data import load
        b = base(model, digest, layer, load().x_test)
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
