"""What the "Step through" page shows, computed from twin.step: the set-up (models that fit,
the templates), one step's stages as numbers, pictures and sentences, the per-layer curves
as a long table, and one convolution pixel explained.

  * set-up       MODELS (the presets small enough to step, a small CNN, your own MLP or CNN),
                 TEMPLATES (vanishing vs healthy gradients, an exploding learning rate,
                 momentum vs none), `config_of` and `make_stepper` from the page's choices
  * one step     `forward`, `loss_stage`, `backward`, `update`, `effect`: what each stage shows
  * many steps   `curves`: the history as a long table (step, layer, metric, value);
                 `gradient_ratio`: last over first layer's gradient norm, the vanishing test
  * a conv pixel `conv_pixel`: the explanation as pictures and sentences
  * `render`     all of the above for one record: what the page computes per step (the
                 benchmark, scripts/bench_step.py, times it)

Left out: widgets, layout and chart styling (pages/step.py), and the stepping itself (twin.step).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..data import CLASSES, IMAGE_SIZE
from ..errors import ConfigError
from ..models import CNNConfig, MLPConfig, ModelConfig, plan_parameters, preset, validate_config
from ..twin.conv_pixel import explain_conv_pixel
from ..twin.step import OPTIMIZERS, SHOW, StepRecord, Stepper, check_size, norm
from .inside import colorize, map_grid, weight_grid
from .shared import tile_grid, upscale

UNITS = 16   # first-layer units (or filters) drawn as pictures
CHECK_TOLERANCE = 1e-6  # float64: twin and autograd differ by ~1e-15; anything near this is a bug

# the models offered: key -> (what it is, its config); presets keep their names
MODELS: dict[str, tuple[str, Any]] = {
    "mlp-seed000": ("784-128-10 ReLU MLP (seed 000)", lambda: preset("mlp-seed000")["model"]),
    "mlp-seed001": ("784-128-64-10 ReLU MLP (seed 001)", lambda: preset("mlp-seed001")["model"]),
    "cnn-small": ("small CNN: 2 conv (8, 16 filters, 3×3) + max pooling + fc 32",
                  lambda: CNNConfig(channels=(8, 16), kernel=3, fc=(32,))),
    "cnn-seed003": ("LeNet-5 style CNN (seed 003): 5×5 conv, average pooling", lambda: preset("cnn-seed003")["model"]),
    "own-mlp": ("your own MLP", None),
    "own-cnn": ("your own CNN", None),
}

# what each template sets; "claim" is what it shows, in one sentence (the tests check it)
TEMPLATES: dict[str, dict[str, Any]] = {
    "vanishing": {"title": "Vanishing (sigmoid)",
                  "model": MLPConfig(hidden=(64, 64, 64, 64), activation="sigmoid"),
                  "optimizer": "sgd", "lr": 0.1, "batch": 64, "same_batch": False,
                  "claim": "The first layer's gradient is hundreds of times smaller than the last layer's: "
                           "every sigmoid multiplies it by at most 0.25 on the way down, so the first "
                           "layers hardly learn."},
    "healthy": {"title": "Healthy (ReLU + BN)",
                "model": MLPConfig(hidden=(64, 64, 64, 64), activation="relu", batchnorm=True),
                "optimizer": "sgd", "lr": 0.1, "batch": 64, "same_batch": False,
                "claim": "Every layer's gradient is within 10× of the last layer's: ReLU passes gradients "
                         "on unchanged where it is active, and batchnorm keeps every layer's scale."},
    "exploding": {"title": "Exploding (lr 1.0)",
                  "model": MLPConfig(hidden=(128,)), "optimizer": "momentum", "lr": 1.0, "momentum": 0.9,
                  "batch": 64, "same_batch": False,
                  "claim": "Steps far too large overshoot: the loss jumps up instead of down, and the "
                           "update-to-weight ratio is far above the healthy 0.001."},
    "no-momentum": {"title": "No momentum",
                    "model": MLPConfig(hidden=(128,)), "optimizer": "sgd", "lr": 0.01,
                    "batch": 64, "same_batch": False,
                    "claim": "Small careful steps: the loss falls slowly. Run 100, then try the template "
                             "with momentum and compare the curves."},
    "momentum": {"title": "Momentum 0.9",
                 "model": MLPConfig(hidden=(128,)), "optimizer": "momentum", "lr": 0.01, "momentum": 0.9,
                 "batch": 64, "same_batch": False,
                 "claim": "Momentum adds up the steps that agree: with the same learning rate the loss "
                          "falls about twice as fast as without."},
}


# --- set-up ------------------------------------------------------------------------------

def parse_widths(text: str, what: str) -> tuple[int, ...]:
    """'128, 64' -> (128, 64); a clear sentence for anything else."""
    try:
        widths = tuple(int(t) for t in str(text).replace(" ", "").split(",") if t)
    except ValueError:
        raise ConfigError(f"{what}: write whole numbers separated by commas, such as 128, 64") from None
    if not widths or any(w < 1 for w in widths):
        raise ConfigError(f"{what}: at least one number, each 1 or more")
    return widths


def config_of(choice: dict[str, Any]) -> ModelConfig:
    """The page's model choice -> the config to step (validated; none has dropout, which
    twin.step refuses)."""
    key = choice.get("model", "mlp-seed000")
    if key not in MODELS:
        raise ConfigError(f"unknown model {key!r}; choose one of {', '.join(MODELS)}")
    if key == "own-mlp":
        cfg = MLPConfig(hidden=parse_widths(choice.get("hidden", "128"), "hidden layers"),
                        activation=choice.get("activation", "relu"), batchnorm=bool(choice.get("batchnorm")))
    elif key == "own-cnn":
        cfg = CNNConfig(channels=parse_widths(choice.get("channels", "8, 16"), "conv channels"),
                        kernel=int(choice.get("kernel", 3)), pool=choice.get("pool", "max"),
                        fc=parse_widths(choice.get("fc", "32"), "fully connected layers"),
                        activation=choice.get("activation", "relu"), batchnorm=bool(choice.get("batchnorm")))
    else:
        cfg = MODELS[key][1]()
    validate_config(cfg)
    return cfg


def make_stepper(choice: dict[str, Any], x_train: np.ndarray, y_train: np.ndarray,
                 drawing: dict | None = None) -> Stepper:
    """The page's set-up -> a Stepper. choice: model (+ its fields), optimizer, lr, momentum,
    batch, seed, source ("train" | "drawing"), same_batch. drawing: {"x": (28, 28) in [0, 1],
    "label": class number}, the batch of one image when source is "drawing"."""
    cfg = config_of(choice)
    common = dict(seed=int(choice.get("seed", 0)), optimizer=choice.get("optimizer", "sgd"),
                  lr=float(choice.get("lr", 0.1)), momentum=float(choice.get("momentum", 0.9)))
    if choice.get("source") == "drawing":
        if drawing is None:
            raise ConfigError("no drawing yet: draw one on the Predict page (or pick an image there), "
                              "then come back")
        x = np.clip(np.asarray(drawing["x"], np.float64).reshape(1, IMAGE_SIZE, IMAGE_SIZE), 0, 1)
        return Stepper(cfg, x, np.array([int(drawing["label"])]), batch_size=1, same_batch=True, **common)
    return Stepper(cfg, x_train, y_train, batch_size=int(choice.get("batch", 64)),
                   same_batch=bool(choice.get("same_batch", True)), **common)


def template_choice(name: str) -> dict[str, Any]:
    """A template as the page's choice dict (your own MLP with its widths written out)."""
    t = TEMPLATES[name]
    m = t["model"]
    return {"model": "own-mlp", "hidden": ", ".join(str(h) for h in m.hidden), "activation": m.activation,
            "batchnorm": m.batchnorm, "optimizer": t["optimizer"], "lr": t["lr"],
            "momentum": t.get("momentum", 0.9), "batch": t["batch"], "seed": 0, "source": "train",
            "same_batch": t["same_batch"]}


def size_note(cfg: ModelConfig, batch: int) -> str:
    check_size(cfg, batch)
    return f"{plan_parameters(cfg):,} parameters, {batch} images a step"


# --- one step --------------------------------------------------------------------------------

def strip_picture(values: np.ndarray, width: int = 512, height: int = 22) -> np.ndarray:
    """A vector of values -> a strip image, one stripe per value (blue < 0 < red, or black to
    white when none is negative), about `width` pixels wide: cheaper than a chart per layer."""
    v = np.asarray(values, np.float64).reshape(1, -1)
    rgb = colorize(v)
    return np.repeat(np.repeat(rgb, height, axis=0), max(1, width // v.shape[1]), axis=1)


def _shape(a: np.ndarray) -> str:
    return " × ".join(str(s) for s in a.shape)


def forward(rec: StepRecord, image: int = 0) -> list[dict[str, Any]]:
    """Each layer's output for one image of the batch: maps as a picture (first channels),
    vectors as values; with the mean and spread over the shown images."""
    rows = []
    for d in rec.layers:
        out = d["out"][image]
        row = {"name": d["name"], "kind": d["kind"], "shape": _shape(out), "mean": float(d["out"].mean()),
               "std": float(d["out"].std())}
        if out.ndim == 3:                             # (H, W, C) -> (C, H, W) tiles
            maps = out.transpose(2, 0, 1)[:UNITS]
            row["picture"] = map_grid(maps, cols=min(len(maps), 8), target=56 if len(maps) > 1 else 112)
        elif out.ndim == 2:                           # the input, normalized
            row["picture"] = upscale(colorize(out), 4)
        else:
            row["values"] = out
            row["picture"] = strip_picture(out)
        rows.append(row)
    return rows


def first_layer(rec: StepRecord) -> dict[str, Any]:
    """The first weighted layer's weights before, gradient and update as pictures (28x28 per unit
    for an MLP, k x k per filter for a CNN), UNITS of them."""
    name = next(d["name"] for d in rec.layers if d["kind"] in ("linear", "conv"))
    w = f"{name}.weight"
    n = min(UNITS, len(rec.before[w]))
    if rec.before[w].ndim == 2:
        shape = (n, IMAGE_SIZE, IMAGE_SIZE)
    else:
        shape = (n,) + rec.before[w].shape[2:]
    pics = {k: a[:n].reshape(shape) for k, a in (("weights", rec.before[w]), ("gradient", rec.grads[w]),
                                                  ("update", rec.update(w)), ("after", rec.after[w]))}
    target = 84 if shape[1] == IMAGE_SIZE else 56
    return {"layer": name, "shown": n, "total": len(rec.before[w]),
            **{k: weight_grid(v, cols=8, target=target) for k, v in pics.items()}}


def loss_stage(rec: StepRecord, image: int = 0) -> pd.DataFrame:
    """Softmax probabilities against the one-hot label, with dLoss/dlogit = (p - y) / N."""
    y = int(rec.labels[image])
    return pd.DataFrame({"class": list(CLASSES), "probability": rec.probs[image],
                         "one-hot label": [1.0 if k == y else 0.0 for k in range(len(CLASSES))],
                         "dLoss/dlogit": rec.dlogits[image]})


def image_loss(rec: StepRecord, image: int = 0) -> float:
    """This image's cross-entropy, -log p(true class): its share of the batch's mean."""
    return float(-np.log(max(rec.probs[image, int(rec.labels[image])], 1e-300)))


def backward(rec: StepRecord, image: int = 0) -> list[dict[str, Any]]:
    """From the loss down: each layer's dLoss/d(output) for one image, and each weighted layer's
    weight gradient (its norm, and a picture of its first units)."""
    rows = []
    for d in reversed(rec.layers):
        if d["grad"] is None:
            continue
        g = d["grad"][image]
        row = {"name": d["name"], "kind": d["kind"], "shape": _shape(g), "norm": norm(g)}
        if g.ndim == 3:
            maps = g.transpose(2, 0, 1)[:UNITS]
            row["picture"] = map_grid(maps, cols=min(len(maps), 8), target=56 if len(maps) > 1 else 112)
        else:
            row["values"] = g
            row["picture"] = strip_picture(g)
        w = f"{d['name']}.weight"
        if w in rec.grads:
            gw = rec.grads[w]
            row["weight_grad_norm"] = norm(gw)
            row["weight_grad_shape"] = _shape(gw)
            if gw.ndim == 2 and gw.shape[1] == IMAGE_SIZE * IMAGE_SIZE:
                row["weight_grad_picture"] = weight_grid(gw[:UNITS].reshape(-1, IMAGE_SIZE, IMAGE_SIZE), cols=8,
                                                         target=56)
            elif gw.ndim == 4:
                row["weight_grad_picture"] = weight_grid(gw[:UNITS, 0], cols=8, target=42)
            else:                                     # (out, in): the matrix itself, one pixel per weight
                shown = gw[:64, :256]
                row["weight_grad_picture"] = upscale(colorize(shown), max(2, 512 // shown.shape[1]))
        rows.append(row)
    return rows


def update(rec: StepRecord) -> pd.DataFrame:
    """Per parameter tensor: its size, gradient norm, update norm and update-to-weight ratio;
    Adam's columns too (the moments' sizes)."""
    rows = []
    for n, before in rec.before.items():
        u = rec.update(n)
        norm_w = norm(before)
        row = {"parameter": n, "shape": _shape(before), "|gradient|": norm(rec.grads[n]),
               "|update|": norm(u), "update / weight": norm(u) / norm_w
               if norm_w else float("nan")}
        if "m" in rec.optimizer:
            row["|m| (1st moment)"] = norm(rec.optimizer["m"][n])
            row["|v| (2nd moment)"] = norm(rec.optimizer["v"][n])
        rows.append(row)
    return pd.DataFrame(rows)


def update_rule(rec: StepRecord) -> str:
    """The optimizer's update in words and symbols, with this step's numbers."""
    o = rec.optimizer
    if o["kind"] == "adam":
        return (f"Adam, step t = {o['t']}: m = 0.9·m + 0.1·g, v = 0.999·v + 0.001·g², "
                f"w ← w − {o['step_size']:.4g} · m / (√v / {np.sqrt(1 - o['b2'] ** o['t']):.4g} + 1e-8)  "
                f"(step size lr / (1 − 0.9^t) = {o['lr']:g} / {1 - o['b1'] ** o['t']:.4g})")
    if o["kind"] == "momentum":
        return (f"SGD with momentum: buf = {o['momentum']:g}·buf + g (buf = g at the first step), "
                f"w ← w − {o['lr']:g} · buf")
    return f"SGD: w ← w − {o['lr']:g} · g (the gradient times the learning rate)"


def adam_moments(rec: StepRecord) -> dict[str, np.ndarray] | None:
    """Adam's moment estimates of the first layer's first units as pictures (None without Adam)."""
    o = rec.optimizer
    if "m" not in o:
        return None
    first = next(d["name"] for d in rec.layers if d["kind"] in ("linear", "conv"))
    w = f"{first}.weight"
    m, v = o["m"][w], o["v"][w]
    n = min(UNITS, len(m))
    shape = (n, IMAGE_SIZE, IMAGE_SIZE) if m.ndim == 2 else (n,) + m.shape[2:]
    target = 56 if shape[1] == IMAGE_SIZE else 42
    return {"m": weight_grid(m[:n].reshape(shape), cols=8, target=target),
            "v": weight_grid(np.sqrt(v[:n]).reshape(shape), cols=8, target=target)}


def effect(rec: StepRecord) -> dict[str, Any]:
    """The batch before and after the update: loss, accuracy, and the shown images' predictions."""
    y = rec.labels
    n = len(rec.images)
    table = pd.DataFrame({
        "image": [f"#{int(i)}" for i in rec.indices[:n]], "true class": [CLASSES[int(k)] for k in y[:n]],
        "before": [f"{CLASSES[int(k)]} ({p:.0%})" for k, p in zip(rec.probs.argmax(1), rec.probs.max(1))],
        "p(true) before": rec.probs[np.arange(n), y[:n]],
        "after": [f"{CLASSES[int(k)]} ({p:.0%})" for k, p in zip(rec.probs_after.argmax(1), rec.probs_after.max(1))],
        "p(true) after": rec.probs_after[np.arange(n), y[:n]]})
    return {"loss": rec.loss, "loss_after": rec.loss_after,
            "accuracy": float((rec.pred == y).mean()), "accuracy_after": float((rec.pred_after == y).mean()),
            "table": table, "images": tile_grid((rec.images * 255).astype(np.uint8), cols=SHOW, factor=3, gap=2)}


def check_sentence(check: dict[str, float]) -> tuple[bool, str]:
    """(within tolerance?, a sentence) for the twin-vs-autograd comparison of one step."""
    if not np.isfinite(check["largest"]):
        return False, ("The numbers overflowed (the loss or the weights are no longer finite): steps this large "
                       "diverge, in the twin and in PyTorch alike. Lower the learning rate and press Reset.")
    ok = check["largest"] <= CHECK_TOLERANCE
    text = (f"PyTorch's autograd ran the same step: largest difference from the twin **{check['largest']:.1e}** "
            "(relative, where the numbers exceed 1) "
            f"— loss {check['loss']:.0e}, activation gradients {check['activation_grads']:.0e}, weight gradients "
            f"{check['grads']:.0e}, updates {check['updates']:.0e}")
    text += (" — the same numbers, up to float64 rounding." if ok else
             f" — above {CHECK_TOLERANCE:g}: a bug in the twin.")
    if "activation_grads_under_ties" in check:
        text += (f" Below a max pooling whose window held equal values (blank background), the two may "
                 f"route a gradient to different tied pixels (differences there up to "
                 f"{check['activation_grads_under_ties']:.0e}); the weights' gradients still agree.")
    return ok, text


# --- many steps --------------------------------------------------------------------------------

CURVE_METRICS = {"mean": "activation mean", "std": "activation std", "dead": "dead ReLUs (fraction)",
                 "grad_norm": "gradient norm", "update_ratio": "update / weight"}


def curves(history: list[dict]) -> pd.DataFrame:
    """The stepper's history -> long table: step, layer, metric (CURVE_METRICS key), value;
    the batch loss as layer "loss"."""
    rows = []
    for h in history:
        rows.append({"step": h["step"], "layer": "loss", "metric": "loss", "value": h["loss"]})
        for layer, d in h["layers"].items():
            rows.extend({"step": h["step"], "layer": layer, "metric": m, "value": v} for m, v in d.items())
    return pd.DataFrame(rows, columns=["step", "layer", "metric", "value"])


def gradient_ratio(history_row: dict) -> float:
    """The first weighted layer's gradient norm over the last one's: 1e-3 = vanishing by 1000x."""
    norms = [d["grad_norm"] for d in history_row["layers"].values() if "grad_norm" in d]
    return norms[0] / norms[-1]


# --- a conv pixel --------------------------------------------------------------------------------

def conv_pixel(rec: StepRecord, layer: str, channel: int, row: int, col: int, image: int = 0) -> dict[str, Any]:
    """explain_conv_pixel with pictures (patch, kernel, products per input channel, the gradient's
    shares) and sentences, forward and backward."""
    e = explain_conv_pixel(rec, layer, channel, row, col, image)
    k = e["kernel_size"]
    f = max(1, 84 // k)
    sym = float(np.abs(e["products"]).max()) or 1.0

    def tiles(a, signed=True, scale=None):  # (C, k, k) -> one picture: the first 8 channels, 4 a row
        a = a[:8]
        return tile_grid(np.stack([colorize(t, scale, signed) for t in a]), cols=min(len(a), 4), factor=f,
                         gap=3, gap_colour=(70, 70, 70))
    e["pictures"] = {"patch": tiles(e["patch"]), "kernel": tiles(e["kernel"]),
                     "products": tiles(e["products"], scale=sym),
                     "kernel_grad": tiles(e["kernel_grad"]), "input_grad": tiles(e["input_grad"])}
    terms = e["products"].size
    e["sentence"] = (f"{layer}, channel {channel}, pixel (row {row}, column {col}) of image {image + 1}: the "
                     f"{k}×{k} patch of its input{'s' if e['patch'].shape[0] > 1 else ''} times the kernel, "
                     f"{terms} products, add up to {e['value'] - e['bias']:.6f}; plus the bias {e['bias']:.6f} "
                     f"makes **{e['value']:.6f}** — the layer's output there is {e['layer_value']:.6f}.")
    steps = []
    for c in e["chain"]:
        if c["kind"] == "pool" and c.get("dropped"):
            steps.append(f"{c['name']}: this pixel is in the odd last row or column, which pooling drops.")
        elif c["kind"] == "pool":
            vals = ", ".join(f"{v:.4f}" for v in c["window"].reshape(-1))
            if c["type"] == "max":
                steps.append(f"{c['name']}: max of its 2×2 window ({vals}) = {c['value']:.4f} — this pixel "
                             + ("wins: the gradient flows back through it." if c["wins"] else
                                "does not win: no gradient flows back to it through this window."))
            else:
                steps.append(f"{c['name']}: mean of its 2×2 window ({vals}) = {c['value']:.4f}; a quarter of "
                             "the gradient flows back to each.")
        elif c["kind"] == "act":
            steps.append(f"{c['name']} ({c['args']['fn']}): {c['value']:.4f}")
        else:
            steps.append(f"{c['name']} ({c['kind']}): {c['value']:.4f} at (row {c['at'][0]}, column {c['at'][1]})")
    e["steps"] = steps
    outside = int((~e["inside"]).sum())
    e["backward"] = (f"Backward: dLoss/d(this output) = {e['grad']:.3e}. It reaches the {k}×{k} kernel weights as "
                     f"gradient × patch (what this pixel adds to the kernel's gradient; the whole gradient sums "
                     f"this over every pixel of every image of the batch), and the {k * k - outside} input pixels "
                     f"under the window as gradient × kernel"
                     + (f" ({outside} of the window's places are padding outside the image)." if outside else "."))
    return e


def conv_map(rec: StepRecord, layer: str, channel: int, image: int = 0) -> np.ndarray:
    """One conv output map (H, W) of one image: what the page draws for picking a pixel."""
    d = next(d for d in rec.layers if d["name"] == layer)
    return d["out"][image, :, :, channel]


# --- everything for one record -----------------------------------------------------------------

def render(stepper: Stepper, rec: StepRecord, image: int = 0) -> dict[str, Any]:
    """All the page computes to draw one step (the benchmark times it with the step)."""
    out = {"forward": forward(rec, image), "first": first_layer(rec), "loss": loss_stage(rec, image),
           "backward": backward(rec, image), "update": update(rec), "rule": update_rule(rec),
           "adam": adam_moments(rec), "effect": effect(rec), "check": check_sentence(rec.check) if rec.check else None,
           "curves": curves(stepper.history)}
    convs = [d["name"] for d in rec.layers if d["kind"] == "conv"]
    if convs:
        out["conv"] = conv_pixel(rec, convs[0], 0, 0, 0, image)
    return out


__all__ = ["CHECK_TOLERANCE", "MODELS", "OPTIMIZERS", "TEMPLATES", "backward", "check_sentence", "config_of",
           "conv_map", "conv_pixel", "curves", "effect", "first_layer", "forward", "gradient_ratio",
           "loss_stage", "make_stepper", "render", "size_note", "template_choice", "update", "update_rule"]
