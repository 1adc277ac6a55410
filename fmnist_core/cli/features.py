"""`python -m fmnist_core features BACKBONE [--resolution R] [--layer L] [--checkpoint FILE]
[--images N] [--no-wait]`: a backbone's features of the Fashion-MNIST images, as the shared
job of the dispatcher (fmnist_core/features.py), followed until done.

Prints one JSON line: the job's record (state, the result's meta: width, images, seconds,
precision) and the folder of the cached arrays. Progress goes to stderr. A cached result
answers at once. An unknown backbone, layer or resolution is one sentence and exit 2.
"""
from __future__ import annotations

import sys
import time

from . import command, emit_json


def _args(p):
    p.add_argument("backbone", help="efficientnet-lite0 | efficientnet-lite0-untrained | checkpoint")
    p.add_argument("--resolution", type=int, help="pixels the 28x28 image is resized to (EfficientNet; default 64)")
    p.add_argument("--layer", help="pooled | stage0..stage6 (EfficientNet), a layer name (checkpoint; "
                                   "default its conv stack: flatten, or gap for a ResNet)")
    p.add_argument("--checkpoint", help="the checkpoint whose conv stack is the backbone, e.g. artifacts/models/cnn.pt")
    p.add_argument("--images", type=int, default=0, help="only the first N images of each split (default 0: all)")
    p.add_argument("--no-wait", action="store_true", help="ask for the job and return at once")


@command("features", "a backbone's features of all 70,000 images, computed once as a shared job and cached")
def cmd_features(args) -> int:
    from .. import analysis, features
    rec = features.request(args.backbone, args.resolution, args.layer, args.checkpoint, args.images, asker="cli")
    source, params = rec["source"], rec["params"]
    shown = -1
    while not args.no_wait and rec["state"] in ("waiting", "running"):
        time.sleep(1.0)
        rec = analysis.get(rec["key"]) or rec
        step = int(rec.get("progress", 0) * 20)
        if step != shown:
            shown = step
            print(f"features: {rec.get('progress', 0):4.0%} {rec.get('message', '')}", file=sys.stderr, flush=True)
    out = {"key": rec["key"], "state": rec["state"], "message": rec.get("message"), "params": params,
           "price_mb": round(analysis.price_mb(features.KIND, source, params)),
           "folder": str(features.folder(source, params)), "result": features.cached(source, params)}
    emit_json(out)
    return 0 if rec["state"] in ("done", "waiting", "running") else 1
cmd_features.add_arguments = _args


def _head_args(p):
    p.add_argument("backbone", help="efficientnet-lite0 | efficientnet-lite0-untrained | checkpoint")
    p.add_argument("--resolution", type=int)
    p.add_argument("--layer")
    p.add_argument("--checkpoint", help="the checkpoint whose conv stack is the backbone")
    p.add_argument("--images", type=int, default=0, help="features of the first N images of each split (0: all)")
    p.add_argument("--hidden", default="", help="hidden widths, e.g. 512 or 512,256 (default: a linear head)")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--engine", default="torch", help="torch | numpy (the twin's own backprop)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--optimizer", default="adam")
    p.add_argument("--val-fraction", type=float, default=0.0)
    p.add_argument("--queue", action="store_true", help="through the class queue (priced, limits) instead of here")


@command("head", "train a head on a backbone's cached features as a run in the store; one JSON line at the end")
def cmd_head(args) -> int:
    import os

    from .. import heads, runs
    from ..errors import WorkbenchError
    from ..execute import execute_run
    from ..spec import RunSpec
    from ..submit import follow_run, submit
    from ..train import TrainConfig
    from .core import Progress
    try:
        hidden = tuple(int(h) for h in args.hidden.split(",") if h.strip())
    except ValueError:
        raise WorkbenchError(f"--hidden takes widths like 512 or 512,256, not {args.hidden!r}") from None
    cfg = heads.head_config(args.backbone, args.resolution, args.layer, args.checkpoint, hidden, args.dropout,
                            args.images)
    tcfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                       val_fraction=args.val_fraction)
    spec = RunSpec(cfg, tcfg, engine=args.engine).validate().to_dict()
    label = f"{'linear' if not hidden else 'MLP'} head on {args.backbone}" + (
        f" ({os.path.basename(args.checkpoint)})" if args.checkpoint else f" at {cfg.resolution} px")
    if args.queue:
        run_id = submit(spec, label=label)
        return _done(follow_run(run_id, Progress()))
    run_id = runs.create_run(spec, label=label, owner=os.environ.get("USER") or "cli",
                             extra_tags={"fmnist.by_teacher": "1"})
    return _done(execute_run(run_id, callback=Progress()))


def _done(summary: dict) -> int:
    emit_json(summary)
    return 0 if summary["status"] in ("finished", "cancelled") else 1


cmd_head.add_arguments = _head_args


def _finetune_args(p):
    p.add_argument("--images", type=int, default=2000, help="the first N training images (default 2,000)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--stages", type=int, default=2, help="EfficientNet stages trained, from the last (0-7)")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--test-images", type=int, default=2000)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    p.add_argument("--price-only", action="store_true", help="say what it would cost, train nothing")


@command("finetune", "fine-tune EfficientNet-Lite0's last stages + a head on a small budget; priced first")
def cmd_finetune(args) -> int:
    import torch

    from .. import backbones, finetune
    from ..data import load
    from ..errors import WorkbenchError
    backbones.check(backbones.PRETRAINED, args.resolution, "pooled")
    if not 1 <= args.images <= 60_000 or not 1 <= args.test_images <= 10_000 or args.epochs < 1:
        raise WorkbenchError("--images 1..60,000, --test-images 1..10,000 and --epochs >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    prec = finetune._precision(torch.device("cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu"))
    threads = torch.get_num_threads()
    asked = finetune.price(args.images, args.epochs, args.stages, args.resolution, test_images=args.test_images,
                           precision=prec, threads=threads)
    full = finetune.price(60_000, 1, args.stages, args.resolution, precision=prec, threads=threads)
    out = {"price": asked.to_dict(), "full_epoch_price": full.to_dict(),
           "class_limits": {"this": finetune.refusal(asked) or "allowed", "full_epoch": finetune.refusal(full) or "allowed"}}
    if not args.price_only:
        out["result"] = finetune.finetune(load(), args.images, args.epochs, args.stages, args.resolution,
                                          args.test_images, device=args.device,
                                          progress=lambda s: print(f"finetune: {s}", file=sys.stderr, flush=True))
    emit_json(out)
    return 0


cmd_finetune.add_arguments = _finetune_args
