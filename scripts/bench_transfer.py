"""Transfer learning, measured (issue 21): features once, heads in seconds, a class of your own.

    python scripts/bench_transfer.py [--epochs 10] [--hidden 256] [--rounds 3] [--out FILE.json]

Needs the three feature sets computed first (each a shared job; `python -m fmnist_core features`):

    python -m fmnist_core features efficientnet-lite0                     # 64 px, pooled, 1,280 wide
    python -m fmnist_core features efficientnet-lite0-untrained           # the control
    python -m fmnist_core features checkpoint --checkpoint artifacts/models/cnn.pt   # seed 002's

It reports each extraction's time as its job measured it (meta.json), then trains, on all 60,000
training features and scored on the 10,000 test ones, the same heads on each backbone:
an MLP head (--hidden, dropout 0.2) by PyTorch and by the NumPy twin, and a linear head by
PyTorch; then a class of your own from 15 drawn pictures (--rounds times, the median). One
thread each, as the dispatcher's trainings. Prints a table on stderr and one JSON line (with the
CPU and the load average at the start and the end) on stdout; --out writes the JSON too.
"""
from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def load_avg() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def star_png(i: int) -> bytes:
    """A red five-pointed star on dark or light paper, a little moved, turned and sized."""
    import numpy as np
    from PIL import Image, ImageDraw
    rng = np.random.default_rng(i)
    im = Image.new("RGB", (160, 160), (25, 25, 30) if i % 2 else (235, 235, 228))
    cx, cy = 80 + rng.integers(-8, 9), 80 + rng.integers(-8, 9)
    r, turn = 58 + rng.integers(-8, 9), rng.normal(0, 0.08)
    pts = [(cx + (r if k % 2 == 0 else 0.4 * r) * np.cos(np.pi / 2 + k * np.pi / 5 + turn),
            cy - (r if k % 2 == 0 else 0.4 * r) * np.sin(np.pi / 2 + k * np.pi / 5 + turn)) for k in range(10)]
    ImageDraw.Draw(im).polygon(pts, fill=(210, 35, 35))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3, help="classes of your own trained (median reported)")
    ap.add_argument("--only", default="", help="comma-separated backbones to run (default: all three)")
    ap.add_argument("--out")
    args = ap.parse_args()

    import torch

    from fmnist_core import backbones, features, heads, own_class
    from fmnist_core.data import load
    from fmnist_core.device import cpu_name
    from fmnist_core.train import TrainConfig
    torch.set_num_threads(1)
    start = {"load_avg": load_avg(), "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    ds = load()
    cnn = str(ROOT / "artifacts" / "models" / "cnn.pt")
    sources = {"pretrained": (backbones.PRETRAINED, None), "control": (backbones.CONTROL, None),
               "cnn.pt conv stack": (backbones.CHECKPOINT, cnn)}
    if args.only:
        sources = {k: v for k, v in sources.items() if k in args.only.split(",")}
    rows = []
    for label, (bb, ckpt) in sources.items():
        source, params = features.params_for(bb, checkpoint=ckpt)
        meta = features.cached(source, params)
        if meta is None:
            print(f"{label}: features not computed; run python -m fmnist_core features {bb}"
                  + (f" --checkpoint {ckpt}" if ckpt else ""), file=sys.stderr)
            continue
        for name, hidden, engine in (("MLP", (args.hidden,), "torch"), ("MLP", (args.hidden,), "numpy"),
                                     ("linear", (), "torch")):
            cfg = heads.head_config(bb, checkpoint=ckpt, hidden=hidden, dropout=0.2 if hidden else 0.0)
            data = heads.feature_data(cfg, ds)
            tc = TrainConfig(epochs=args.epochs, batch_size=256, lr=1e-3, optimizer="adam", val_fraction=0.0,
                             seed=0, threads=1, device="cpu", precision="fp32")
            t = time.perf_counter()
            r = heads.trainer(engine)(cfg, tc, data)
            seconds = time.perf_counter() - t
            row = {"backbone": label, "features_s": meta["seconds"], "features_precision": meta["precision"],
                   "width": meta["width"], "head": f"{name} {'-'.join(map(str, hidden)) or ''}".strip(),
                   "engine": engine, "epochs": args.epochs, "test_accuracy": round(heads.test_accuracy(r.model, data), 4),
                   "head_seconds": round(seconds, 1)}
            rows.append(row)
            print(f"{label:18s} {row['head']:10s} {engine:6s} {row['test_accuracy']:.2%}  {seconds:6.1f} s  "
                  f"(features {meta['seconds']:.0f} s, {meta['precision']})  load {load_avg()}", file=sys.stderr)
    own = []
    if "pretrained" in sources and args.rounds:
        net = backbones.build(backbones.PRETRAINED, 64)
        pictures = [star_png(i) for i in range(15)]
        own_class.train_own(pictures, "star", net=net, data=ds)  # warm-up: first-call costs
        for k in range(args.rounds):
            r = own_class.train_own(pictures, "star", net=net, seed=k, data=ds)
            own.append({k2: r[k2] for k2 in ("own_accuracy", "ten_accuracy_with", "ten_accuracy_without",
                                              "seconds", "heads_seconds")})
            print(f"class of your own, round {k + 1}: {r['own_accuracy']:.0%} held out, ten classes "
                  f"{r['ten_accuracy_with']:.2%} with / {r['ten_accuracy_without']:.2%} without, {r['seconds']:.1f} s",
                  file=sys.stderr)
    out = {"cpu": cpu_name(), "threads": 1, "start": start, "end": {"load_avg": load_avg(),
           "time": time.strftime("%Y-%m-%d %H:%M:%S")}, "heads": rows, "own_class": own}
    if own:
        out["own_class_median"] = {k: statistics.median(o[k] for o in own) for k in own[0]}
    print(json.dumps(out))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
