"""What the Predict page shows: one prepared 28x28 input through PyTorch and the NumPy twin,
their probabilities side by side, the preprocessing steps big enough to see, and for a
drawing what in it makes the model misread it (an outline, a top drawn wider than tall, a
hairline stroke) with the same drawing filled in.

Left out: preprocessing itself (fmnist_core.preprocess) and the model list (shared).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..data import CLASSES
from .shared import as_input, softmax


def predict_both(model, net, x: np.ndarray) -> dict[str, Any]:
    """One prepared input through PyTorch and the NumPy twin.

    The PyTorch side is fmnist_core.predict's prediction, the one the CLI's `predict` makes:
    {"label", "index", "probabilities", "top3"}. Added: "probability" (of the top class),
    "torch" and "manual" (10,) probability arrays, "manual_label", "agree" (same top class),
    "max_prob_diff".
    """
    from ..predict import predict_array
    x = as_input(x)
    result = predict_array(model, x)
    p_t = np.fromiter(result["probabilities"].values(), np.float32, len(CLASSES))
    p_m = softmax(net.forward(x[None])[0])
    k_m = int(p_m.argmax())
    return {**result, "probability": float(p_t[result["index"]]), "torch": p_t, "manual": p_m,
            "manual_label": CLASSES[k_m], "agree": result["index"] == k_m,
            "max_prob_diff": float(np.abs(p_t - p_m).max())}


def probability_table(result: dict[str, Any]):
    """The two probability vectors side by side: class, PyTorch, NumPy twin, |difference|."""
    import pandas as pd
    t, m = np.asarray(result["torch"], np.float64), np.asarray(result["manual"], np.float64)
    return pd.DataFrame({"class": list(CLASSES), "PyTorch": t, "NumPy twin": m, "|difference|": np.abs(t - m)})


TILE_SIDE = 112         # px: a preprocessing step's square tile; four in a row fit beside the canvas
TILE_FRAME = (38, 39, 48)  # the dark frame around an image in its tile: white garments on a white
                           # page looked hollow, and the dataset's own images are light on black


def tile(img, side: int = TILE_SIDE):
    """A preprocessing step (PIL image) as a fixed-size square tile: the image fitted inside,
    letterboxed on a dark frame, whatever its shape (a tall thin drawing stays a tile, not a
    900 px column). Images smaller than the tile are enlarged by a whole factor with
    nearest-neighbour, so each of the model's 28x28 pixels stays a sharp square."""
    from PIL import Image
    im = img.convert("RGB") if img.mode not in ("RGB", "L") else img
    w, h = im.size
    if max(w, h) <= side:
        k = max(1, side // max(w, h))
        im = im.resize((w * k, h * k), Image.Resampling.NEAREST)
    else:
        k = side / max(w, h)
        im = im.resize((max(1, round(w * k)), max(1, round(h * k))), Image.Resampling.LANCZOS)
    frame = Image.new("RGB", (side, side), TILE_FRAME)
    frame.paste(im.convert("RGB"), ((side - im.size[0]) // 2, (side - im.size[1]) // 2))
    return frame


FOOL_LEVEL = 8  # gray levels (8/255 = 0.031): FGSM changes most test images' answer there


def fool_start_level(model, x: np.ndarray, most: int = 64) -> int:
    """Where "Fool the model" starts for a new input, in gray levels: FOOL_LEVEL when FGSM changes
    the answer there, else the smallest level up to `most` where it does (an upload the model is
    sure of needs more), so the first thing shown is the demonstration working; FOOL_LEVEL when
    nothing up to `most` changes it."""
    from ..adversarial import attack_one, smallest_flip
    if attack_one(model, x, "FGSM", FOOL_LEVEL / 255)["flipped"]:
        return FOOL_LEVEL
    found = smallest_flip(model, x, "FGSM", search_max=most / 255)
    return round(found["epsilon"] * 255) if found["epsilon"] is not None else FOOL_LEVEL


def camera_blocked(page_url: str) -> str | None:
    """Why the browser will refuse the camera on this page, or None when it may allow it.

    Browsers give pages the camera only in a secure context: https, or http on this very
    machine (localhost, 127.0.0.1, ::1). A student on http://<server>:8501 gets nothing but
    a silent failure, so the page says why and what to do."""
    from urllib.parse import urlsplit
    parts = urlsplit(page_url or "")
    host = (parts.hostname or "").lower()
    if parts.scheme == "https" or host in ("localhost", "127.0.0.1", "::1") or host.endswith(".localhost"):
        return None
    return (f"Your browser will not open the camera on {parts.scheme or 'http'}://{parts.netloc}: cameras "
            "work only on https (or on the server's own screen). Ask the teacher for the https address "
            "(`make class` serves one), or take the photo with your phone's camera app and upload it.")


# --- drawings: what makes the model misread them ------------------------------------------

# Measured on drawings made like the canvas's, through the real preprocessing and the shipped
# models (python scripts/measure_drawings.py; CNN / MLP, share read right):
#   outline     a sneaker drawn as an outline: 0/9 and 0/9, every one read Sandal (the only
#               shoes in the dataset with empty space inside); a dress outline: CNN 0/9, read
#               Bag. Filled: sneaker 8/9 and 7/9, dress 9/9 and 9/9. The outline filled in by
#               filled_in(): sneaker 7/9 and 7/9, dress 9/9, ankle boot 9/9 (outline 5/9, 1/9)
#   proportion  the dataset's T-shirts are taller than wide (height / width: median 1.27, 10th
#               percentile 1.12); T-shirts drawn under 0.7 : 1 are read right 33% / 34%, over
#               1 : 1 48% / 68% (the rest mostly Bag or Shirt)
#   line width  T-shirt outlines with a line under 1.5 px in the 28x28 input: 10% / 57%;
#               over 3 px: 70% / 94%
#   not causes  a blur of 0.5 px (43% -> 49% / 53% -> 50%) or the dataset's gray level (48% /
#               44%) after preprocessing; filling a T-shirt in (50% / 49% with 1.5-3 px lines)
OUTLINE_SHARE = 0.75   # ink / filled silhouette below this is an outline (dataset: 1% of test images)
THIN_STROKE_PX = 1.5   # a stroke thinner than this at 28x28 is a faint hairline to the model
TOPS = ("T-shirt/top", "Pullover", "Coat", "Shirt")
UNSURE = 0.5           # below this probability a top's proportions may be what confuses the model
SHOE_FLAT = 0.6        # height / width of the test set's shoes: sneakers median 0.46, ankle boots
                       # 0.75 (10th-90th percentile 0.59-0.96), bags 0.93; a "shoe" read as Bag
                       # and taller than this is drawn too square
INK_LEVEL = 0.2        # a 28x28 pixel brighter than this is ink


def silhouette(x: np.ndarray, level: float = INK_LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """(silhouette, ink) masks of a 28x28 input: ink is x > level; the silhouette is the ink
    with every enclosed hole filled (what is not reachable from the border through no-ink)."""
    ink = np.asarray(x) > level
    outside = np.zeros_like(ink)
    for edge in (np.s_[0, :], np.s_[-1, :], np.s_[:, 0], np.s_[:, -1]):
        outside[edge] = ~ink[edge]
    while True:  # flood fill from the border, 4-connected (a 28x28 image: a few dozen rounds)
        grown = outside.copy()
        grown[1:] |= outside[:-1]
        grown[:-1] |= outside[1:]
        grown[:, 1:] |= outside[:, :-1]
        grown[:, :-1] |= outside[:, 1:]
        grown &= ~ink
        if np.array_equal(grown, outside):
            return ~outside, ink
        outside = grown


def ink_share(x: np.ndarray) -> float:
    """How much of the garment's silhouette is ink: ~1 for the dataset's solid photos (median
    1.00, 1st percentile 0.72), low for an outline drawing."""
    sil, ink = silhouette(x)
    return float(ink.sum()) / max(int(sil.sum()), 1)


def filled_in(x: np.ndarray) -> np.ndarray:
    """The input with the holes of its silhouette filled at the drawing's mean ink level: an
    outline drawn as the solid shape the dataset's photos show."""
    x = as_input(x)
    sil, ink = silhouette(x)
    if not ink.any():
        return x
    holes = sil & ~ink
    x[holes] = np.maximum(x[holes], float(x[ink].mean()))
    return x


def ratio_words(height: float, width: float) -> str:
    """Proportions the way people say them: 'about 1.2 times as wide as tall', 'about as tall as wide'."""
    r = height / max(width, 1e-9)
    if 0.93 <= r <= 1.07:
        return "about as tall as wide"
    return (f"about {r:.1f} times as tall as wide" if r > 1 else f"about {1 / r:.1f} times as wide as tall")


def drawing_advice(x: np.ndarray, trimmed_size: tuple[int, int], stroke: float, label: str,
                   probability: float = 1.0) -> list[tuple[str, str]]:
    """(kind, sentence) for each way this drawing differs from the dataset's look that measurably
    changes what the model says, only where it applies to what was drawn and what was read:
    "outline", "wide" (a top drawn wider than tall, read as Bag or Shirt, or as a top but unsure),
    "shoe" (a shoe drawn too tall, read as Bag), "thin".

    x: the 28x28 model input; trimmed_size: (width, height) of the drawing once trimmed, in the
    canvas image's pixels; stroke: the pen width in those pixels; label and probability: what
    the model said and how sure it was."""
    out = []
    if ink_share(x) < OUTLINE_SHARE:
        out.append(("outline", "Your drawing is an outline. Every garment in the dataset is a solid photo: "
                               "an empty inside is what the model knows from sandals (straps) and bags, so "
                               "outlined shoes come out **Sandal** and outlined dresses **Bag**. Fill it in "
                               "(scribble inside the shape)."))
    w, h = trimmed_size
    shape = ratio_words(h, w)
    # a top read as a top with confidence needs no advice on its proportions
    unsure_top = label in TOPS and probability < UNSURE
    if h < 0.95 * w and (label in ("Bag", "Shirt") or unsure_top):
        out.append(("wide", f"Your drawing is {shape}. If you drew a top: the dataset's T-shirts, shirts, "
                            "pullovers and coats are all taller than wide (a T-shirt about 1.3 times as tall "
                            "as wide, sleeves short and close to the body), and a wide top is read as "
                            "**Bag** or **Shirt**."))
    if label == "Bag" and h > SHOE_FLAT * w:
        said = any(k == "wide" for k, _ in out)  # the proportions were just given
        out.append(("shoe", ("" if said else f"Your drawing is {shape}. ") + "If you drew a shoe: the dataset's shoes are side "
                            "views, sole flat along the bottom, a sneaker about 2.2 times as wide as tall "
                            "and an ankle boot about 1.3 times; a squarer shape is read as **Bag**."))
    px = stroke * 28 / max(w, h, 1)
    if out and out[0][0] == "outline" and px < THIN_STROKE_PX:
        # measured on outlines only: a filled shape has no line width to speak of
        out.append(("thin", f"Your line is about {px:.1f} pixels wide in the 28×28 input, a faint hairline "
                            "to the model: pick a wider stroke with the slider."))
    return out
