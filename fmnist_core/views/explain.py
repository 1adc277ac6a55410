"""What the Predict page's "Why this class?" section shows: an attribution (fmnist_core.explain)
drawn over the 28x28 model input and over the user's original picture, and for MLPs the
NumPy twin's input gradient beside captum's saliency with their largest difference.

Colours: red where a pixel is evidence *for* the chosen class, blue where it is evidence
against, transparent where it hardly matters; each map is scaled to its own largest
magnitude (attributions of different methods have different units). Grad-CAM has no
negative side. The original is overlaid through the preprocessing's Frame (where the 28x28
input lies in the original's pixels, preprocess.preprocess_mapped), so the colours sit on
the part of the photo the model looked at.

The model objects are the dashboard's shared, read-only ones: the twin with its backward
is built once per model and kept in a WeakKeyDictionary (gone with the model).
"""
from __future__ import annotations

import weakref
from typing import Any

import numpy as np
from PIL import Image

from .. import explain as core
from ..data import IMAGE_SIZE
from ..preprocess import Frame

FOR = np.array([230, 40, 30], np.float32)       # evidence for the class: red
AGAINST = np.array([40, 110, 240], np.float32)  # evidence against: blue
OPACITY = 0.85  # at the largest magnitude; the picture shows through everywhere else
_twins: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def heat(attr: np.ndarray) -> np.ndarray:
    """(h, w) attribution -> (h, w, 4) float32 RGBA in [0, 1]: red for, blue against, alpha ~ |a|."""
    a = np.asarray(attr, np.float32)
    top = float(np.abs(a).max())
    v = a / top if top > 0 else np.zeros_like(a)
    rgba = np.empty((*a.shape, 4), np.float32)
    rgba[..., :3] = np.where(v[..., None] >= 0, FOR, AGAINST) / 255.0
    rgba[..., 3] = OPACITY * np.sqrt(np.abs(v))  # square root: the weaker half stays visible
    return rgba


def blend(gray: np.ndarray, rgba: np.ndarray) -> np.ndarray:
    """(h, w) or (h, w, 3) uint8 picture, (h, w, 4) heat -> (h, w, 3) uint8."""
    base = np.asarray(gray, np.float32) / 255.0
    if base.ndim == 2:
        base = np.repeat(base[..., None], 3, axis=2)
    alpha = rgba[..., 3:]
    return np.clip(np.rint((base * (1 - alpha) + rgba[..., :3] * alpha) * 255), 0, 255).astype(np.uint8)


def on_input(x: np.ndarray, attr: np.ndarray, factor: int = 10) -> np.ndarray:
    """The 28x28 input with the attribution over it, each model pixel a factor x factor square."""
    def up(a):
        return np.repeat(np.repeat(a, factor, axis=0), factor, axis=1)
    return blend(up(np.rint(np.asarray(x, np.float32) * 255)), up(heat(attr)))


def on_original(original: Image.Image, frame: Frame, attr: np.ndarray) -> Image.Image:
    """The original picture (any display copy of it, e.g. preprocess's "original" step) with the
    28x28 attribution stretched over the frame the input came from, smoothly (bilinear)."""
    base = original.convert("RGB")
    d = base.size[0] / frame.width  # display pixels per original pixel
    left, top = frame.left * d, frame.top * d
    w, h = (frame.right - frame.left) * d, (frame.bottom - frame.top) * d
    tw, th = max(1, round(w)), max(1, round(h))
    layers = [Image.fromarray(np.ascontiguousarray(c * 255).astype(np.uint8))
              .resize((tw, th), Image.Resampling.BILINEAR) for c in np.moveaxis(heat(attr), 2, 0)]
    rgba = np.stack([np.asarray(c, np.float32) / 255 for c in layers], axis=2)
    canvas = np.zeros((base.size[1], base.size[0], 4), np.float32)
    # paste the frame, clipped to the picture (a padded short edge reaches past it)
    x0, y0 = round(left), round(top)
    cx0, cy0 = max(0, x0), max(0, y0)
    cx1, cy1 = min(base.size[0], x0 + tw), min(base.size[1], y0 + th)
    if cx1 > cx0 and cy1 > cy0:
        canvas[cy0:cy1, cx0:cx1] = rgba[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    return Image.fromarray(blend(np.asarray(base), canvas))


def twin_gradient(model, x: np.ndarray, target: int) -> dict[str, Any] | None:
    """For an MLP: the twin's d score / d x (its own backward), captum's saliency, and their
    largest difference. None for a CNN (the twin has no conv backward)."""
    from ..twin.gradient import input_gradient, twin_of
    if model.config.kind != "mlp":
        return None
    if model not in _twins:
        _twins[model] = twin_of(model)
    twin = input_gradient(_twins[model], x, target).astype(np.float32)
    captum = core.attribute(model, x, "saliency", target)
    return {"twin": twin, "captum": captum, "max_diff": float(np.abs(twin - captum).max()),
            "scale": float(np.abs(captum).max())}


def why(model, x: np.ndarray, method: str, target: int) -> dict[str, Any]:
    """Everything the section draws for one input, method and class: core.explain's dict, the
    overlay on the input, and the twin comparison for MLPs ("twin", or None)."""
    x = np.asarray(x, np.float32).reshape(IMAGE_SIZE, IMAGE_SIZE)
    out = core.explain(model, x, method, target)
    out["overlay"] = on_input(x, out["attribution"])
    out["twin"] = twin_gradient(model, x, out["target_index"])
    return out


FAITHFULNESS_IMAGES = 100  # the first test images: enough to separate the methods (differences of
                           # 0.1-0.4 against ~0.02 between random draws), a few seconds per method


def faithfulness_rows(model, x: np.ndarray) -> list[dict[str, Any]]:
    """The deletion check of every method that fits the model, as table rows for a page: the
    predicted class's mean probability after deleting each method's top 10% of pixels, and
    after the model-free baselines' 10% (random pixels of the garment; the brightest pixels),
    and whether the method beat both (explain.deletion_check)."""
    rows = []
    for method in core.methods_for(model):
        r = core.deletion_check(model, x, method)
        rows.append({"method": core.METHODS[method]["title"], "before": r["before"],
                     "its top 10% deleted": r["after_top"], "random garment 10%": r["after_garment"],
                     "brightest 10%": r["after_intensity"], "beats the baselines": r["beats"]})
    return rows
