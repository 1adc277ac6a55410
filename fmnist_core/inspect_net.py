"""Looking inside one trained network: what the Predict and "Inside the network" pages show.

For a checkpoint loaded twice — the PyTorch nn.Module (models.load_model) and its NumPy
twin (manual.ManualNet) — this module computes:

  * model choices     the shipped models and every finished run's best.pt, as picker entries
  * predict_both      one 28x28 input through both implementations: probabilities side by side,
                      the top class, whether they agree and how far apart they are
  * layer_outputs     every layer's output for one input, PyTorch next to NumPy, with the
                      largest absolute difference per layer (the course project's "identical
                      layer outputs")
  * first_layer       the first layer's weights as pictures: an MLP's first units as 28x28
                      images, a CNN's first conv filters
  * pictures          feature maps and weights as one crisp RGB image (nearest-neighbour
                      upscaling, a blue-white-red map for signed values, gray for >= 0)

The PyTorch side runs the model's children one after the other — exactly what
nn.Sequential.forward does — instead of registering forward hooks: the model is shared
by every dashboard session (st.cache_resource), and a hook is a change to it that another
session's prediction could run into. Nothing here changes the models it is given.

Left out: gradients and saliency maps (inference only), and any styling beyond the
colours of the pictures (fonts and charts live in the pages).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .data import CLASSES, IMAGE_SIZE

# a layer whose PyTorch and NumPy outputs differ by more than this is flagged: float32
# arithmetic in a different order (im2col, folded constants) differs by ~1e-6, a wrong
# layer by far more
AGREE_TOLERANCE = 1e-4
NEGATIVE = np.array([33, 102, 172], np.float32)   # blue: below zero
ZERO = np.array([255, 255, 255], np.float32)       # white: zero
POSITIVE = np.array([178, 24, 43], np.float32)     # red: above zero
GAP_COLOUR = (70, 70, 70)                          # dark gray between tiles: visible next to white


# --- which models there are -------------------------------------------------------------

def model_choices(shipped: list[dict[str, Any]], runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Picker entries, key -> {"label", "path", "kind", "model_config"}; shipped models first,
    then finished runs with a best.pt, newest first.

    `shipped` is views.shipped_models(), `runs` is runs.list_runs(). Runs that are still
    training, failed or were cancelled are left out: their checkpoint may change or be missing.
    """
    from .views import describe_model, run_label
    out: dict[str, dict[str, Any]] = {}
    for m in shipped:
        if m.get("available"):
            acc = (m.get("metrics") or {}).get("test_accuracy")
            out[f"shipped:{m['name']}"] = {
                "label": f"shipped {m['name'].upper()}: {describe_model(m['model_config'])}"
                         + (f" — test {acc:.1%}" if isinstance(acc, (int, float)) else ""),
                "path": m["path"], "kind": (m["model_config"] or {}).get("kind"),
                "model_config": m["model_config"]}
    for r in runs:
        if r.get("status") == "finished" and r.get("checkpoint"):
            cfg = (r.get("config") or {}).get("model_config")
            out[f"run:{r['run_id']}"] = {"label": f"run {run_label(r)}", "path": r["checkpoint"],
                                         "kind": (cfg or {}).get("kind"), "model_config": cfg}
    return out


def default_choice(choices: dict[str, dict[str, Any]]) -> str | None:
    """The shipped CNN if there is one, else the shipped MLP, else the newest finished run."""
    for key in ("shipped:cnn", "shipped:mlp"):
        if key in choices:
            return key
    return next(iter(choices), None)


def load_pair(path: str | Path):
    """(PyTorch model in eval mode on the CPU, ManualNet) from one checkpoint, read once."""
    from .twin import ManualNet, state_dict_to_numpy
    from .models import build_model, config_from_dict, read_checkpoint
    from .errors import CheckpointError
    ckpt = read_checkpoint(path)
    cfg = config_from_dict(ckpt["model_config"])
    model = build_model(cfg)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the saved config ({str(exc)[:200]})") from None
    model.metrics = ckpt.get("metrics", {})
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)  # shared and read-only: no autograd bookkeeping either
    net = ManualNet(cfg, state_dict_to_numpy(ckpt["state_dict"]))
    return model, net


# --- one input through both implementations ---------------------------------------------

def as_input(x: np.ndarray) -> np.ndarray:
    """A (28, 28) image, uint8 or float in [0, 1] -> float32 (28, 28) in [0, 1]; copies."""
    x = np.asarray(x)
    if x.shape != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"expected one 28x28 image, got shape {x.shape}")
    if x.dtype == np.uint8:
        return np.multiply(x, 1 / 255.0, dtype=np.float32)
    return np.array(x, dtype=np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def predict_both(model, net, x: np.ndarray) -> dict[str, Any]:
    """One prepared input through PyTorch and the NumPy twin.

    Returns {"label", "index", "probability", "torch": (10,) probabilities, "manual": (10,),
    "manual_label", "agree" (same top class), "max_prob_diff", "max_logit_diff"}.
    """
    import torch

    from .predict import _one_thread
    x = as_input(x)
    with torch.inference_mode(), _one_thread(1):
        logits_t = model(torch.from_numpy(x).reshape(1, 1, IMAGE_SIZE, IMAGE_SIZE)).float().numpy()[0]
    logits_m = net.forward(x[None])[0]
    p_t, p_m = softmax(logits_t), softmax(logits_m)
    k, k_m = int(p_t.argmax()), int(p_m.argmax())
    return {"label": CLASSES[k], "index": k, "probability": float(p_t[k]),
            "torch": p_t, "manual": p_m, "manual_label": CLASSES[k_m], "agree": k == k_m,
            "max_prob_diff": float(np.abs(p_t - p_m).max()),
            "max_logit_diff": float(np.abs(logits_t - logits_m).max())}


def probability_table(result: dict[str, Any]):
    """The two probability vectors side by side: class, PyTorch, NumPy twin, |difference|."""
    import pandas as pd
    t, m = np.asarray(result["torch"], np.float64), np.asarray(result["manual"], np.float64)
    return pd.DataFrame({"class": list(CLASSES), "PyTorch": t, "NumPy twin": m, "|difference|": np.abs(t - m)})


def random_test_index(y: np.ndarray, class_index: int | None = None, rng=None) -> int:
    """A random test-set index, of one class if given."""
    rng = rng or np.random.default_rng()
    pool = np.arange(len(y)) if class_index is None else np.flatnonzero(np.asarray(y) == class_index)
    return int(rng.choice(pool))


def parameter_summary(table) -> dict[str, Any]:
    """views.layer_summary's table -> total parameters and the largest layer with its share."""
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

    from .predict import _one_thread
    x = as_input(x)
    theirs: list[np.ndarray] = []
    with torch.inference_mode(), _one_thread(1):
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


# --- pictures ----------------------------------------------------------------------------

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


def tile_grid(tiles: np.ndarray, cols: int, factor: int, gap: int = 4) -> np.ndarray:
    """(N, h, w, 3) uint8 tiles -> one RGB image, `cols` per row, each upscaled by `factor`
    (nearest neighbour: one value = one visible square on a projector)."""
    tiles = np.asarray(tiles)
    n, h, w = tiles.shape[:3]
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    th, tw = h * factor, w * factor
    out = np.empty((rows * th + (rows - 1) * gap, cols * tw + (cols - 1) * gap, 3), np.uint8)
    out[:] = GAP_COLOUR
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        big = np.repeat(np.repeat(t, factor, axis=0), factor, axis=1)
        out[r * (th + gap):r * (th + gap) + th, c * (tw + gap):c * (tw + gap) + tw] = big
    return out


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
    return tile_grid(tiles, cols, factor=max(1, round(target / max(h, w))))


def first_layer(model, units: int = 32) -> dict[str, Any]:
    """The first weighted layer as pictures.

    MLP: the first `units` rows of fc1's weight, each a 28x28 image (what that unit looks
    for in the input: red pixels push it up, blue ones down). CNN: every filter of conv1,
    (out, 1, k, k). Returns {"kind", "layer", "weights" (N, h, w), "shown", "total"}.
    """
    sd = model.state_dict()
    if "conv1.weight" in sd:
        w = sd["conv1.weight"].float().numpy()          # (out, in=1, k, k)
        return {"kind": "conv", "layer": "conv1", "weights": w[:, 0], "shown": len(w), "total": len(w)}
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
    return tile_grid(tiles, cols, factor=max(1, round(target / h)))


def strip(values: np.ndarray, height: int = 1) -> np.ndarray:
    """(D,) values of a dense layer -> a (height, D) array for a heat strip."""
    v = np.asarray(values, dtype=np.float32).reshape(1, -1)
    return np.repeat(v, height, axis=0)


def for_display(img, min_side: int = 168):
    """A preprocessing step (PIL image) big enough to see: small ones are enlarged by a whole
    factor with nearest-neighbour, so each of the model's 28x28 pixels stays a sharp square."""
    from PIL import Image
    w, h = img.size
    if max(w, h) >= min_side:
        return img
    k = max(1, min_side // max(w, h))
    return img.resize((w * k, h * k), Image.Resampling.NEAREST)
