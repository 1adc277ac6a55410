"""What changes the model's reading of a drawing: canvas-like drawings (white strokes on a
308 px black canvas) of T-shirts in many proportions, and of other garments as outlines and
filled, through the real preprocessing and the shipped models.

    python scripts/measure_drawings.py

Prints, for T-shirts, the share read as T-shirt by proportion (height / width after the
trim), by line width in the 28x28 input, outline vs filled, and with a blur or the dataset's
gray level applied after preprocessing; for the other garments, outline vs filled vs the
outline filled in by views.predict.filled_in. The figures are quoted in views/predict.py.
"""
from __future__ import annotations

import itertools
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fmnist_core.data import CLASSES  # noqa: E402
from fmnist_core.preprocess import _gaussian_blur, preprocess  # noqa: E402
from fmnist_core.views.predict import filled_in, ink_share  # noqa: E402

SIDE = 308  # pages/predict.py CANVAS_SIDE


def tshirt(body_w, body_h, sleeve, droop, scale, width, fill):
    """A T-shirt as a student draws it; sizes in units of the drawing's height."""
    sh, bw = 0.18, body_w / 2
    a = math.radians(25 + 40 * droop)
    sx, sy, cuff = sleeve * math.cos(a), sleeve * math.sin(a), 0.12 * math.sin(a)
    pts = [(-bw, sh - 0.1), (-0.08, sh - 0.12), (0, sh - 0.04), (0.08, sh - 0.12), (bw, sh - 0.1),
           (bw + sx, sh - 0.1 + sy), (bw + sx - cuff, sh - 0.1 + sy + 0.12), (bw, sh + 0.12),
           (bw, sh + body_h), (-bw, sh + body_h), (-bw, sh + 0.12),
           (-bw - sx + cuff, sh - 0.1 + sy + 0.12), (-bw - sx, sh - 0.1 + sy)]
    size = scale * SIDE
    cx, cy = SIDE / 2, SIDE / 2 - size * (sh + body_h) / 2 + size * 0.05
    return _draw([[(cx + x * size, cy + y * size) for x, y in pts]], width, fill)


SHAPES = {
    "Trouser": [[(110, 30), (200, 30), (210, 280), (170, 280), (155, 110), (140, 280), (100, 280)]],
    "Dress": [[(130, 30), (180, 30), (185, 120), (230, 280), (80, 280), (125, 120)]],
    "Bag": [[(50, 110), (260, 110), (260, 270), (50, 270)], [(110, 110), (120, 40), (190, 40), (200, 110)]],
    "Sneaker": [[(30, 150), (120, 140), (170, 180), (280, 195), (285, 240), (30, 240)]],
    "Ankle boot": [[(60, 40), (150, 40), (160, 170), (270, 200), (275, 270), (55, 270)]],
    "Pullover": [[(100, 30), (210, 30), (280, 230), (250, 240), (210, 120), (210, 280), (100, 280),
                  (100, 120), (60, 240), (30, 230)]],
}


def _draw(polys, width, fill, jitter=0.0, seed=0):
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (SIDE, SIDE), "black")
    d = ImageDraw.Draw(im)
    for p in polys:
        p = [(x + rng.normal(0, jitter), y + rng.normal(0, jitter)) for x, y in p] if jitter else p
        if fill:
            d.polygon(p, fill=(255,) * 3)
        d.line(p + [p[0]], fill=(255,) * 3, width=width, joint="curve")
    return np.asarray(im)


def main() -> None:
    import torch
    from fmnist_core.models import load_model
    torch.set_num_threads(1)
    models = {n: load_model(f"artifacts/models/{n}.pt") for n in ("cnn", "mlp")}

    def read(x):
        with torch.no_grad():
            return {n: int(m(torch.from_numpy(np.asarray(x, np.float32))[None, None]).argmax()) for n, m in models.items()}

    rows = []
    for bw, bh, sl, dr, sc, wd, fill in itertools.product((0.4, 0.55, 0.7), (0.5, 0.7, 0.9), (0.15, 0.3, 0.45),
                                                         (0.0, 0.5, 1.0), (0.5, 0.9), (12, 24), (False, True)):
        x, steps = preprocess(tshirt(bw, bh, sl, dr, sc, wd, fill), return_steps=True)
        w, h = dict(steps)["trimmed to the item"].size
        r = {"aspect": h / w, "line_px": wd * 28 / max(w, h), "fill": fill,
             **{f"{n} as is": k == 0 for n, k in read(x).items()},
             **{f"{n} blur 0.5": k == 0 for n, k in read(np.clip(_gaussian_blur(x, 0.5), 0, 1)).items()},
             **{f"{n} level 0.6": k == 0 for n, k in read(x * 0.6 / x[x > 0.1].mean()).items()}}
        rows.append(r)
    import pandas as pd
    df = pd.DataFrame(rows)
    cols = [c for c in df.columns if c.startswith(("cnn", "mlp"))]
    print(f"T-shirt drawings read as T-shirt ({len(df)} drawings):")
    print(df[cols].mean().round(2).to_string())
    df["proportion"] = pd.cut(df["aspect"], [0, 0.7, 0.85, 1.0, 3], labels=["<0.7", "0.7-0.85", "0.85-1", ">1"])
    print(df.groupby("proportion", observed=True)[["cnn as is", "mlp as is"]].mean().round(2))
    tall = df[df["aspect"] >= 0.85].assign(
        line=lambda d: pd.cut(d["line_px"], [0, 1.5, 3, 9], labels=["<1.5 px", "1.5-3 px", ">3 px"]))
    print("drawings at least 0.85 as tall as wide, by fill and line width in the 28x28 input:")
    print(tall.groupby(["fill", "line"], observed=True)[["cnn as is", "mlp as is"]].mean().round(2))

    print("other garments, 3 line widths x 3 seeds: read right of 9 (most common reading)")
    for shape, polys in SHAPES.items():
        said: dict[tuple[str, str], Counter] = {}
        shares = []
        for wd, seed in itertools.product((12, 24, 40), range(3)):
            outline = preprocess(_draw(polys, wd, False, 4, seed))
            shares.append(ink_share(outline))
            for what, x in (("outline", outline), ("filled", preprocess(_draw(polys, wd, True, 4, seed))),
                            ("outline filled in", filled_in(outline))):
                for n, c in read(x).items():
                    said.setdefault((n, what), Counter())[CLASSES[c]] += 1
        parts = [f"{n} {what} {said[n, what][shape]}/9 ({said[n, what].most_common(1)[0][0]})"
                 for (n, what) in said]
        print(f"{shape} (ink share of the outlines: median {np.median(shares):.2f}): " + " · ".join(parts))


if __name__ == "__main__":
    main()
