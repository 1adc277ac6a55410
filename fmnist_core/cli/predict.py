"""`python -m fmnist_core predict [--model CHECKPOINT] IMAGE...`: one JSON line per file.

    {"file": "shoe.jpg", "label": "Sneaker", "probabilities": {"T-shirt/top": 0.001, ...}}
    {"file": "notes.png", "error": "this is a text file, not an image — ..."}

Exit status 0 when every file was predicted, 1 when any failed (the rest are still printed),
2 when the model itself cannot be loaded (cli.main's convention for bad input). A file that
cannot be read never prints a traceback and never stops the others; nothing is written.
"""
from __future__ import annotations

from . import command, emit_json


def _predict_args(p):
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, GIF, BMP, WebP, TIFF)")
    p.add_argument("--model", metavar="CHECKPOINT",
                   help="checkpoint to use (default: the shipped CNN, artifacts/models/cnn.pt)")


@command("predict", "predict the garment in image files; one JSON line per file")
def cmd_predict(args) -> int:
    from ..errors import WorkbenchError
    from ..models import load_model
    from ..predict import load_default_model, predict_arrays
    from ..preprocess import preprocess
    model = load_model(args.model) if args.model else load_default_model()
    # preprocess every file first, then one batched forward pass for the good ones
    prepared: list[tuple[str, object]] = []
    for name in args.images:
        try:
            prepared.append((name, preprocess(name)))
        except WorkbenchError as exc:
            prepared.append((name, exc))
        except Exception as exc:  # a bug or a decoder we did not foresee: report, carry on
            prepared.append((name, RuntimeError(f"could not process the image ({type(exc).__name__}: "
                                                f"{str(exc)[:120]})")))
    good = [x for _, x in prepared if not isinstance(x, Exception)]
    results = iter(predict_arrays(model, good))
    failed = 0
    for name, x in prepared:
        if isinstance(x, Exception):
            failed += 1
            emit_json({"file": name, "error": str(x)})
        else:
            r = next(results)
            emit_json({"file": name, "label": r["label"],
                       "probabilities": {c: round(p, 6) for c, p in r["probabilities"].items()}})
    return 1 if failed else 0
cmd_predict.add_arguments = _predict_args
