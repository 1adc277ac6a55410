"""What the "Inside the network" page shows, for one checkpoint loaded twice — the PyTorch
nn.Module and its NumPy twin (shared.load_pair):

  * parameters    the largest layer and its share of all parameters
  * layer_outputs every layer's output for one input, PyTorch next to NumPy, with the
                  largest absolute difference per layer (the course project's "identical
                  layer outputs"), and the same over the whole test set (twin.compare)
  * first_layer   the first layer's weights as pictures: an MLP's first units as 28x28
                  images, a CNN's first conv filters
  * pictures      feature maps and weights as one crisp RGB image (nearest-neighbour
                  upscaling, a blue-white-red map for signed values, gray for >= 0)

The PyTorch side runs the model's children one after the other — exactly what
nn.Sequential.forward does — instead of registering forward hooks: the model is shared
by every dashboard session (st.cache_resource), and a hook is a change to it that another
session's prediction could run into. Nothing here changes the models it is given.

Left out: gradients and saliency maps (inference only), and any styling beyond the
colours of the pictures (fonts and charts live in the pages).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..data import IMAGE_SIZE
from .shared import as_input, tile_grid

# a layer whose PyTorch and NumPy outputs differ by more than this is flagged: float32
# arithmetic in a different order (im2col, folded constants) differs by ~1e-6, a wrong
# layer by far more
AGREE_TOLERANCE = 1e-4
NEGATIVE = np.array([33, 102, 172], np.float32)   # blue: below zero
ZERO = np.array([255, 255, 255], np.float32)       # white: zero
POSITIVE = np.array([178, 24, 43], np.float32)     # red: above zero
GAP_COLOUR = (70, 70, 70)                          # dark gray between tiles: visible next to white


# --- numbers -------------------------------------------------------------------------------

def parameter_summary(table) -> dict[str, Any]:
    """shared.layer_summary's table -> total parameters and the largest layer with its share."""
    total = int(table["parameters"].sum())
    if not total:
        return {"total": 0, "largest": None, "share": None}
    row = table.loc[table["parameters"].idxmax()]
    return {"total": total, "largest": str(row["layer"]), "share": float(row["parameters"]) / total}


def strip_range(values: np.ndarray) -> dict[str, Any]:
    """Colour range for a heat strip: symmetric around 0 when any value is negative."""
    v = np.asarray(values, dtype=np.float32)
    top = float(np.abs(v).max()) if v.size else 0.0
    top = top or 1.0
    signed = bool(v.size and v.min() < 0)
    return {"zmin": -top if signed else 0.0, "zmax": top, "signed": signed}


def layer_outputs(model, net, x: np.ndarray) -> list[dict[str, Any]]:
    """Every layer's output for one input, both implementations, in torch's layout.

    One dict per layer of the plan: name, kind, shape (without the batch axis), "torch" and
    "manual" outputs (batch axis dropped), max_abs_diff, and agree (<= AGREE_TOLERANCE).
    """
    import torch

    from ..predict import one_thread_for_few
    x = as_input(x)
    theirs: list[np.ndarray] = []
    with torch.inference_mode(), one_thread_for_few(1):
        h = torch.from_numpy(x).reshape(1, 1, IMAGE_SIZE, IMAGE_SIZE)
        for module in model.children():  # exactly nn.Sequential's forward, no hooks needed
            h = module(h)
            theirs.append(h.float().numpy()[0].copy())
    ours = net.forward_layers(x[None])
    kinds = {s.name: s.kind for s in net.plan}
    out = []
    for (name, mine), ref in zip(ours, theirs):
        mine = np.asarray(mine)[0]
        diff = float(np.abs(mine - ref).max()) if mine.size else 0.0
        out.append({"name": name, "kind": kinds[name], "shape": tuple(ref.shape), "torch": ref,
                    "manual": mine, "max_abs_diff": diff, "agree": diff <= AGREE_TOLERANCE})
    return out


def layer_diff_table(layers: list[dict[str, Any]]):
    """layer_outputs -> a table: layer, kind, output shape, values, max |PyTorch - NumPy|."""
    import pandas as pd
    return pd.DataFrame([{"layer": d["name"], "kind": d["kind"],
                          "output shape": " × ".join(str(s) for s in d["shape"]),
                          "values": int(np.prod(d["shape"])), "max |PyTorch − NumPy|": d["max_abs_diff"],
                          "same": "yes" if d["agree"] else "NO"} for d in layers])


def compare_summary(result: dict[str, Any]) -> dict[str, Any]:
    """manual.compare's result -> the few numbers a page shows, plus the per-layer table."""
    import pandas as pd
    layers = pd.DataFrame([{"layer": r["name"], "kind": r["kind"],
                            "max |PyTorch − NumPy| over all images": r["max_abs_diff"]}
                           for r in result["layers"]])
    return {"images": result["n"], "agreement": result["agreement"],
            "accuracy_torch": result["accuracy_torch"], "accuracy_manual": result["accuracy_manual"],
            "disagreements": int(round((1 - result["agreement"]) * result["n"])),
            "max_abs_diff": result["max_abs_diff"], "layers": layers}


# --- pictures ------------------------------------------------------------------------------

def colorize(a: np.ndarray, scale: float | None = None, signed: bool | None = None) -> np.ndarray:
    """Values -> RGB uint8. Signed: blue (negative) - white (0) - red (positive), symmetric
    around 0 with `scale` (default: the largest |value|). Non-negative: black (0) to white
    (scale), the dataset's own look."""
    a = np.asarray(a, dtype=np.float32)
    if signed is None:
        signed = bool(a.size and a.min() < 0)
    top = float(scale if scale is not None else (np.abs(a).max() if a.size else 0.0))
    top = top if top > 0 else 1.0
    v = np.clip(a / top, -1.0 if signed else 0.0, 1.0)[..., None]
    if signed:
        rgb = np.where(v >= 0, ZERO + (POSITIVE - ZERO) * v, ZERO + (NEGATIVE - ZERO) * -v)
    else:
        rgb = np.broadcast_to(v * 255.0, v.shape[:-1] + (3,))
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def map_grid(maps: np.ndarray, cols: int | None = None, target: int = 84, shared_scale: bool = True) -> np.ndarray:
    """(C, H, W) feature maps -> one RGB image: each map a tile, about `target` px wide.

    shared_scale: one colour scale for the whole layer, so a weak channel looks weak.
    """
    maps = np.asarray(maps, dtype=np.float32)
    c, h, w = maps.shape
    signed = bool(maps.min() < 0)
    scale = float(np.abs(maps).max()) if shared_scale else None
    tiles = np.stack([colorize(m, scale if shared_scale else None, signed) for m in maps])
    cols = cols or min(c, 16)
    return tile_grid(tiles, cols, factor=max(1, round(target / max(h, w))), gap_colour=GAP_COLOUR)


def first_layer(model, units: int = 32) -> dict[str, Any]:
    """The first weighted layer as pictures.

    MLP: the first `units` rows of fc1's weight, each a 28x28 image (what that unit looks
    for in the input: red pixels push it up, blue ones down). CNN: every filter of conv1,
    (out, 1, k, k). Returns {"kind", "layer", "weights" (N, h, w), "shown", "total"}.
    """
    sd = model.state_dict()
    conv = next((k for k in ("conv1", "stem") if f"{k}.weight" in sd), None)  # a ResNet's first conv: stem
    if conv:
        w = sd[f"{conv}.weight"].float().numpy()          # (out, in=1, k, k)
        return {"kind": "conv", "layer": conv, "weights": w[:, 0], "shown": len(w), "total": len(w)}
    w = sd["fc1.weight" if "fc1.weight" in sd else "out.weight"].float().numpy()  # (units, 784)
    layer = "fc1" if "fc1.weight" in sd else "out"
    n = min(units, len(w))
    return {"kind": "linear", "layer": layer, "weights": w[:n].reshape(n, IMAGE_SIZE, IMAGE_SIZE),
            "shown": n, "total": len(w)}


def weight_grid(weights: np.ndarray, cols: int = 8, target: int = 112) -> np.ndarray:
    """(N, h, w) weights -> one RGB image, each tile on its own symmetric blue-white-red scale
    (a unit's pattern matters, not its overall size)."""
    weights = np.asarray(weights, dtype=np.float32)
    tiles = np.stack([colorize(w, signed=True) for w in weights])
    h = weights.shape[1]
    return tile_grid(tiles, cols, factor=max(1, round(target / h)), gap_colour=GAP_COLOUR)


def strip(values: np.ndarray, height: int = 1) -> np.ndarray:
    """(D,) values of a dense layer -> a (height, D) array for a heat strip."""
    v = np.asarray(values, dtype=np.float32).reshape(1, -1)
    return np.repeat(v, height, axis=0)
