"""`python -m fmnist_core embed CHECKPOINT [--layer NAME] --method pca|tsne|umap [--out FILE]`:
a 2-D map of one layer's activations for the 10,000 test images (fmnist_core.embed).
`embed --bench [CHECKPOINT] [--reference]`: the map benchmark (fmnist_core.embed_bench).
`ship-maps [CHECKPOINT...]`: the maps shipped with the models (fmnist_core.maps_ship; `make maps`).

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
    p.add_argument("checkpoint", nargs="?",
                   help="a model checkpoint (.pt), e.g. artifacts/models/cnn.pt (--bench: the shipped CNN by default)")
    p.add_argument("--layer", metavar="NAME",
                   help="a layer of the model's plan (default: the one before the output layer)")
    p.add_argument("--method", default="pca", metavar="pca|tsne|umap",
                   help="pca (default, seconds), tsne (openTSNE) or umap (umap-learn): about a minute")
    p.add_argument("--out", metavar="FILE", help="write the map to FILE.npz or FILE.csv (index, label, x, y)")
    p.add_argument("--bench", action="store_true",
                   help="the map benchmark instead (fmnist_core.embed_bench): t-SNE seconds and 10-NN class "
                        "agreement, PCA seconds of every layer; nothing cached")
    p.add_argument("--reference", action="store_true",
                   help="--bench: also t-SNE with the settings used before tuning, and the agreement's change")
    p.add_argument("--no-pca", action="store_true", help="--bench: t-SNE only")


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
    if args.bench:
        return _bench(args)
    if not args.checkpoint:
        raise WorkbenchError("name a checkpoint, e.g. artifacts/models/cnn.pt")
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


def _bench(args) -> int:
    from pathlib import Path

    from .. import embed_bench
    from ..data import PROJECT_ROOT, load
    from ..errors import WorkbenchError
    checkpoint = args.checkpoint or str(PROJECT_ROOT / "artifacts" / "models" / "cnn.pt")
    if not Path(checkpoint).is_file():
        raise WorkbenchError(f"no checkpoint at {checkpoint}")
    ds = load()
    emit_json(embed_bench.bench(checkpoint, ds.x_test, ds.y_test, layer=args.layer, reference=args.reference,
                                pca_layers=not args.no_pca, say=lambda s: print(s, file=sys.stderr, flush=True)))
    return 0


def _ship_args(p):
    p.add_argument("checkpoints", nargs="*", metavar="CHECKPOINT",
                   help="shipped checkpoints (default: every artifacts/models/*.pt)")
    p.add_argument("--methods", default=",".join(("pca", "tsne", "umap")), metavar="pca,tsne,umap")
    p.add_argument("--layers", metavar="A,B", help="these layers (default: each model's main layers)")


@command("ship-maps", "make the maps shipped with the models (artifacts/models/maps/): PCA, t-SNE and "
                      "UMAP of each checkpoint's main layers, so the Map page never waits for them")
def cmd_ship_maps(args) -> int:
    from pathlib import Path

    from .. import embed, maps_ship
    from ..data import PROJECT_ROOT, load
    from ..errors import WorkbenchError
    methods = [m for m in args.methods.split(",") if m]
    for m in methods:
        if m not in embed.METHODS:
            raise WorkbenchError(f"unknown method {m!r}; choose from {', '.join(embed.METHODS)}")
    given = bool(args.checkpoints)
    checkpoints = args.checkpoints or sorted(str(p) for p in (PROJECT_ROOT / "artifacts" / "models").glob("*.pt"))
    for c in checkpoints:
        if not Path(c).is_file():
            raise WorkbenchError(f"no checkpoint at {c}")
    layers = [x for x in (args.layers or "").split(",") if x] or None
    ds = load()
    rows = []
    for c in checkpoints:
        rows += maps_ship.ship(c, ds.x_test, ds.y_test, methods=methods, layers=layers,
                               say=lambda s: print(s, file=sys.stderr, flush=True))
    # only a run over all the shipped models knows which maps no model needs any more
    removed = [] if given else maps_ship.prune(checkpoints)
    emit_json({"maps": rows, "removed": removed, "total_bytes": maps_ship.total_bytes(),
               "folder": str(embed.shipped_dir())})
    return 0
cmd_ship_maps.add_arguments = _ship_args
