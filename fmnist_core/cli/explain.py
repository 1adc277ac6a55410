"""`python -m fmnist_core explain [--model CKPT] [--method M] [--target CLASS] IMAGE...`: which
pixels made the model say what it said, one JSON line per file.

    {"file": "bag.png", "label": "Bag", "target": "Bag", "target_probability": 0.97,
     "method": "saliency", "attribution": [[...28 numbers...], ... 28 rows]}
    {"file": "notes.png", "error": "this is a text file, not an image — ..."}

The attribution is on the 28x28 model input (fmnist_core.explain; larger = more evidence for
the target class). --target: a class name or index, default the predicted class. The error
contract is predict's: a file that cannot be read prints its error line and the others go
on (exit 1); a bad --method, an unknown --target class, Grad-CAM on a model without conv
layers or an unreadable model exit 2 with one sentence before any file is read.
`--bench` times the methods instead (median ms per method, shipped CNN and MLP, one image);
`--deletion N` prints the faithfulness figures (explain.deletion_check) on N test images.
"""
from __future__ import annotations

from . import command, emit_json


def _explain_args(p):
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files (PNG, JPEG, GIF, BMP, WebP, TIFF)")
    p.add_argument("--model", metavar="CHECKPOINT",
                   help="checkpoint to use (default: the shipped CNN, artifacts/models/cnn.pt)")
    p.add_argument("--method", default="saliency", metavar="METHOD",
                   help="saliency | ig | occlusion | gradcam (CNNs only); default saliency")
    p.add_argument("--target", metavar="CLASS", help="class to explain, name or 0-9 (default: the predicted one)")
    p.add_argument("--bench", action="store_true",
                   help="time every method on one test image (shipped CNN and MLP) and print the medians")
    p.add_argument("--deletion", type=int, metavar="N",
                   help="the faithfulness figures instead: deleting each method's top 10%% of pixels "
                        "vs a random 10%%, on the first N test images (shipped CNN and MLP)")


@command("explain", "which pixels made the model say its class (captum attributions); one JSON line per file")
def cmd_explain(args) -> int:
    from ..errors import ConfigError, WorkbenchError
    from ..explain import check_method, class_index, explain, last_conv
    from ..models import load_model
    from ..predict import load_default_model
    from ..preprocess import preprocess
    if args.bench or args.deletion:
        return _figures(args)
    if not args.images:
        raise ConfigError("give at least one image file (or --bench)")
    method = check_method(args.method)
    target = None if args.target is None else class_index(args.target)
    model = load_model(args.model) if args.model else load_default_model()
    if method == "gradcam":
        last_conv(model)
    failed = 0
    for name in args.images:
        try:
            r = explain(model, preprocess(name), method, target)
        except WorkbenchError as exc:
            failed += 1
            emit_json({"file": name, "error": str(exc)})
            continue
        except Exception as exc:  # a bug or a decoder we did not foresee: report, carry on
            failed += 1
            emit_json({"file": name, "error": f"could not process the image ({type(exc).__name__}: "
                                              f"{str(exc)[:120]})"})
            continue
        emit_json({"file": name, "label": r["label"], "target": r["target"],
                   "target_probability": round(r["target_probability"], 6), "method": method,
                   "attribution": [[float(f"{v:.4g}") for v in row] for row in r["attribution"].tolist()]})
    return 1 if failed else 0
cmd_explain.add_arguments = _explain_args


def _figures(args) -> int:
    import sys
    from ..errors import ConfigError
    from ..explain import bench, deletion_figures
    if args.deletion is not None and not 1 <= args.deletion <= 10_000:
        raise ConfigError(f"--deletion needs 1 to 10000 test images, got {args.deletion}")
    def say(text):
        print(text, file=sys.stderr, flush=True)
    rows = bench(progress=say) if args.bench else deletion_figures(args.deletion, progress=say)
    for row in rows:
        emit_json(row)
    return 0
