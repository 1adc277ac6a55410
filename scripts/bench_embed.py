"""Times of the Map page's maps (fmnist_core.embed) for the 10,000 test images: PCA, t-SNE and
UMAP of the shipped CNN's and MLP's layer before the output, each computed from nothing (an
empty cache folder) and then read back from the cache.

    python scripts/bench_embed.py [--methods pca,tsne,umap] [--models cnn,mlp]

Prints one JSON line per (model, method): first-run seconds (activations + PCA basis + the
method), cached seconds, and the load average when it started — timings on a shared 2-core
machine are only comparable within one run. UMAP's first run in a fresh cache folder also
compiles numba's functions unless NUMBA_CACHE_DIR already holds them (set below to the
project's artifacts/cache/numba, as the dashboard does).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / "artifacts" / "cache" / "numba"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="pca,tsne,umap")
    ap.add_argument("--models", default="cnn,mlp")
    args = ap.parse_args()
    from fmnist_core.data import load
    ds = load()
    with tempfile.TemporaryDirectory(dir=ROOT / "artifacts" / "cache") as tmp:
        os.environ["FMNIST_ARTIFACTS"] = tmp  # an empty cache: every first run computes
        from fmnist_core import embed
        from fmnist_core.models import load_model
        for name in args.models.split(","):
            ckpt = ROOT / "artifacts" / "models" / f"{name}.pt"
            model = load_model(ckpt)
            layer = embed.default_layer(model)
            for method in args.methods.split(","):
                for f in Path(tmp, "cache", "embed").glob(f"*-{layer}-base.npz"):
                    f.unlink()  # each method's first run includes the activations and the PCA basis
                load = os.getloadavg()[0]
                t = time.perf_counter()
                first = embed.embed(ckpt, layer, method, ds.x_test, ds.y_test, model=model)
                t_first = time.perf_counter() - t
                t = time.perf_counter()
                again = embed.embed(ckpt, layer, method, ds.x_test, ds.y_test, model=model)
                t_cached = time.perf_counter() - t
                assert again["cached"] and not first["cached"]
                print(json.dumps({"model": name, "layer": layer, "method": method, "points": len(first["xy"]),
                                  "first_s": round(t_first, 2), "cached_s": round(t_cached, 4),
                                  "load_avg_1min": round(load, 2), "cpus": os.cpu_count()}), flush=True)


if __name__ == "__main__":
    main()
