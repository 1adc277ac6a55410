"""The maps shipped with the models: PCA, t-SNE and UMAP of each shipped checkpoint's main
layers (embed.main_layers), made once by `make maps` (`python -m fmnist_core ship-maps`) and
committed beside the models in artifacts/models/maps/, so a first visit to the Map page of a
shipped model reads a file instead of waiting a minute for a job.

One file per (checkpoint content hash, layer, method): <hash>-<layer>-<method>.npz, written
with np.savez_compressed and read with allow_pickle=False (embed.load_shipped). It holds

  * xy           (10000, 2) float16: the map's coordinates, row i = test image i (40 KB; float16
                 keeps 3 significant digits, far finer than a dot on the page)
  * explained    the variance share of the two PCA axes (the page's caption)
  * width, base_dims   the values per image PCA saw, and the PCA components t-SNE and UMAP ran on
  * seconds      how long making the map took (activations, PCA, the method), for the record

Each map is computed from nothing in a scratch cache (an old cache entry, made with other
settings, is never copied), with embed's own code: a shipped map is exactly what the job
would have made. Files of checkpoints that are no longer shipped are removed (`prune`).

Left out: the PCA basis (mean, components, the 50-D coordinates: ~1 MB a layer). Placing a
Predict input on a shipped map makes it once, in seconds (embed.place).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from . import embed
from .files import write_atomic

Say = Callable[[str], None]


def _write(path: Path, result: dict, seconds: float) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would add ".npz" to a bare name
            np.savez_compressed(f, version=np.int64(embed.CACHE_VERSION), xy=result["xy"].astype(np.float16),
                                explained=np.asarray(result["explained"], np.float32),
                                width=np.int64(result["width"]), base_dims=np.int64(result["base_dims"]),
                                seconds=np.float64(seconds))
    write_atomic(path, write)


def ship(checkpoint: str | Path, images: np.ndarray, labels: np.ndarray, methods=embed.METHODS,
         layers: list[str] | None = None, say: Say = lambda s: None) -> list[dict]:
    """Make the maps of one checkpoint's `layers` (default: its main layers) for `methods`, into
    embed.shipped_dir(). Returns one row per map: layer, method, seconds, cpu_seconds, bytes."""
    from .models import load_model
    model = load_model(checkpoint)
    layers = layers or embed.main_layers(model)
    for layer in layers:
        embed.check_request(model, layer, "pca")
    digest = embed.checkpoint_hash(checkpoint)
    rows = []
    with embed.scratch_cache("ship-maps-"):  # embed's cache_dir(): computed from nothing
        for layer in layers:
            for method in methods:
                t, c = time.perf_counter(), time.process_time()
                r = embed.embed(checkpoint, layer, method, images, labels, model=model, shipped=False)
                seconds, cpu = time.perf_counter() - t, time.process_time() - c
                path = embed.shipped_path(digest, layer, method)
                _write(path, r, seconds)
                rows.append({"checkpoint": str(checkpoint), "layer": layer, "method": method,
                             "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2),
                             "bytes": path.stat().st_size})
                say(f"{Path(checkpoint).name} {layer} {method}: {seconds:.1f} s, {path.stat().st_size:,} bytes")
            # the basis goes with the scratch cache: the next layer's maps start from nothing
    return rows


def prune(checkpoints: list[str | Path]) -> list[str]:
    """Remove shipped maps of checkpoints not in `checkpoints` (an old version of a retrained
    model); returns the names removed."""
    keep = {embed.checkpoint_hash(c) for c in checkpoints}
    gone = []
    folder = embed.shipped_dir()
    for p in sorted(folder.glob("*.npz")) if folder.is_dir() else []:
        if p.name.split("-", 1)[0] not in keep:
            p.unlink()
            gone.append(p.name)
    return gone


def total_bytes() -> int:
    folder = embed.shipped_dir()
    return sum(p.stat().st_size for p in folder.glob("*.npz")) if folder.is_dir() else 0
