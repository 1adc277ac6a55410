"""`python -m fmnist_core embed CHECKPOINT [--layer NAME] --method pca|tsne|umap [--out FILE]`:
a 2-D map of one layer's activations for the 10,000 test images (fmnist_core.embed).

Without --out: one JSON line summarising the map (points, layer, method, seconds, whether it
came from the cache, and the map's extent). With --out FILE.npz: arrays index, label, x, y
(written atomically, readable with allow_pickle=False); FILE.csv: the same as a table with a
header line. Progress goes to stderr. An unknown layer or method, a missing checkpoint or a
bad --out is one sentence on stderr and exit 2, before any work.
"""
from __future__ import annotations

import sys

from . import command, emit_json

OUT_SUFFIXES = (".npz", ".csv")


def _embed_args(p):
    p.add_argument("checkpoint", help="a model checkpoint (.pt), e.g. artifacts/models/cnn.pt")
    p.add_argument("--layer", metavar="NAME",
                   help="a layer of the model's plan (default: the one before the output layer)")
    p.add_argument("--method", default="pca", metavar="pca|tsne|umap",
                   help="pca (default, seconds), tsne (openTSNE) or umap (umap-learn): about a minute")
    p.add_argument("--out", metavar="FILE", help="write the map to FILE.npz or FILE.csv (index, label, x, y)")


def _write(path: str, result: dict) -> None:
    import numpy as np

    from ..files import write_atomic, write_bytes_atomic
    xy, labels = result["xy"], result["labels"]
    index = np.arange(len(xy), dtype=np.int64)
    if path.lower().endswith(".npz"):
        def write(tmp):
            with open(tmp, "wb") as f:
                np.savez(f, index=index, label=labels, x=xy[:, 0], y=xy[:, 1])
        write_atomic(path, write)
    else:
        rows = "".join(f"{i},{int(c)},{x:.6g},{y:.6g}\n" for i, c, (x, y) in zip(index, labels, xy))
        write_bytes_atomic(path, "index,label,x,y\n" + rows)


@command("embed", "a 2-D map (PCA, t-SNE or UMAP) of one layer's activations for the 10,000 test images")
def cmd_embed(args) -> int:
    from pathlib import Path

    from .. import embed
    from ..data import load
    from ..errors import WorkbenchError
    from ..files import check_output_file
    from ..models import load_model
    if args.out:
        suffix = Path(args.out).suffix.lower()
        if suffix not in OUT_SUFFIXES:
            raise WorkbenchError(f"--out {args.out}: the file name must end in .npz or .csv")
        check_output_file(args.out, suffix, "--out")
    if args.method not in embed.METHODS:
        raise WorkbenchError(f"unknown method {args.method!r}; choose one of {', '.join(embed.METHODS)}")
    model = load_model(args.checkpoint)
    layer = args.layer or embed.default_layer(model)
    embed.check_request(model, layer, args.method)
    ds = load()
    shown = {"at": -1}

    def progress(frac: float, what: str) -> None:
        step = int(frac * 10)
        if step != shown["at"]:
            shown["at"] = step
            print(f"{embed.METHOD_NAMES[args.method]} of {layer}: {frac:4.0%} ({what})", file=sys.stderr, flush=True)

    result = embed.embed(args.checkpoint, layer, args.method, ds.x_test, ds.y_test, model=model, progress=progress)
    xy = result["xy"]
    summary = {"checkpoint": str(args.checkpoint), "layer": layer, "method": args.method,
               "points": int(len(xy)), "layer_width": result["width"], "base_dims": result["base_dims"],
               "cached": result["cached"], "seconds": round(result["seconds"], 3),
               "x_range": [float(xy[:, 0].min()), float(xy[:, 0].max())],
               "y_range": [float(xy[:, 1].min()), float(xy[:, 1].max())]}
    if args.out:
        _write(args.out, result)
        summary["out"] = args.out
    emit_json(summary)
    return 0
cmd_embed.add_arguments = _embed_args
