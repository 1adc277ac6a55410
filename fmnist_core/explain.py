"""Why did the model say Bag? Attributions of one class score to the 28x28 input's pixels, by captum.

Four methods, all from captum (none written out here), each answering the question differently:

  saliency   d score / d pixel: which pixels would raise the score (positive) or lower it
             (negative) if brightened a little (captum Saliency, abs=False; one backward pass)
  ig         Integrated Gradients from a black image (the dataset's background, 0): the
             gradient averaged along the straight path from black to the input (50 steps),
             times the input; its pixels add up to score(input) - score(black)
  occlusion  how much the score falls when a 4x4 patch is set to black (captum Occlusion,
             stride 2: 169 patches, one batched forward pass)
  gradcam    Grad-CAM (CNNs only): the last conv layer's feature maps (rectified: the output
             of that conv's block, as in the Grad-CAM paper) weighted by their mean gradient,
             ReLU, upsampled to 28x28 (captum LayerGradCam + LayerAttribution.interpolate)

`attribute(model, x, method, target)` returns a (28, 28) float32 array: larger means more
evidence *for* the target class (Grad-CAM is >= 0; the others are signed).

Measured choices (the deletion check on 200 test images, shipped CNN; drop of the predicted
class's probability, top 10% vs random 10%; tests/test_explain.py):
  * saliency signed, not |gradient| (captum's default abs=True, Simonyan et al.): |gradient|
    ranks as many background pixels as garment pixels first and was no better than random
    (0.131 vs 0.128-0.136 over three random draws); the signed gradient: 0.37 vs 0.13;
  * Grad-CAM on the conv block's rectified output: on the conv module's raw output (before
    pooling, batchnorm and ReLU) the deletion drop was 0.086, *less* than random (0.130);
    on the block's ReLU output 0.181.
`explain(...)` adds what a page or the CLI prints (the label, the target, its probability).
`deletion_check(...)` is the faithfulness test: delete (set to black) the 10% of pixels with
the highest attribution, or a random 10%, and see how much the class probability falls.

Models are the workbench's FashionNet (nn.Sequential, first layer normalizes), inputs
(N, 1, 28, 28) in [0, 1]. Captum puts hooks on the model while it works, and the dashboard
shares one model object between sessions, so every attribution holds a lock.

The NumPy twin computes the saliency gradient with its own backward pass (twin.gradient).
Mapping an attribution back onto the user's photo: preprocess.preprocess_mapped and
views.explain.
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np
import torch

from .data import CLASSES, IMAGE_SIZE
from .errors import ConfigError, ImageError

OCCLUSION_WINDOW = 4   # a 4x4 patch: a seventh of the side, the size of a strap or a heel;
OCCLUSION_STRIDE = 2   # stride 2: 13x13 = 169 placements overlap, so the map reads smoothly
IG_STEPS = 50          # Riemann steps along the path (captum's default). Completeness error
                       # |sum - (score(x) - score(black))| / that gap on 50 test images, shipped
                       # CNN: median 0.7%, max 4.8% (32 steps: 1.6%, max 11%); well under 1 s
METHODS: dict[str, dict[str, str]] = {
    "saliency": {"title": "Gradient saliency",
                 "about": "how strongly a small change of each pixel would move the class score"},
    "ig": {"title": "Integrated Gradients",
           "about": "each pixel's share of the score, summed along the way from a black image to this one"},
    "occlusion": {"title": "Occlusion",
                  "about": f"how much the score falls when a {OCCLUSION_WINDOW}×{OCCLUSION_WINDOW} "
                           "patch around each pixel is blacked out"},
    "gradcam": {"title": "Grad-CAM",
                "about": "where in the last conv layer's feature maps the evidence for the class lies "
                         "(coarse: that layer's resolution, upsampled)"},
}
_lock = threading.Lock()


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ConfigError(f"unknown attribution method {method!r}; choose one of {', '.join(METHODS)}")
    return method


def methods_for(model) -> list[str]:
    """The methods that apply to this model: Grad-CAM only where there is a conv layer."""
    return [m for m in METHODS if m != "gradcam" or _last_conv(model) is not None]


def class_index(target: str | int) -> int:
    """A class given as its index (0-9, also as text) or its name (any case) -> its index."""
    text = str(target).strip()
    if text.isdigit() and int(text) < len(CLASSES):
        return int(text)
    names = {c.lower(): i for i, c in enumerate(CLASSES)}
    if text.lower() in names:
        return names[text.lower()]
    raise ConfigError(f"unknown class {text!r}; give 0-{len(CLASSES) - 1} or one of {', '.join(CLASSES)}")


def _last_conv(model) -> tuple[str, torch.nn.Module] | None:
    """The last conv layer's rectified output: the last activation before `flatten` (after the
    last conv, its pooling and batchnorm, in whichever order the config puts them)."""
    names = [s.name for s in model.plan]
    # a residual block ends in its own activation: the last block's output is the conv output
    kinds = ["act" if k == "resblock" else k for k in (s.kind for s in model.plan)]
    if "conv" not in kinds:
        return None
    conv = len(kinds) - 1 - kinds[::-1].index("conv")
    ends = [i for i in range(conv, len(kinds)) if kinds[i] in ("flatten", "gap")]
    flat = ends[0] if ends else len(kinds)
    acts = [i for i in range(conv, flat) if kinds[i] == "act"]
    name = names[acts[-1] if acts else conv]
    return name, model.get_submodule(name)


def last_conv(model) -> tuple[str, torch.nn.Module]:
    """(name, module) of the layer Grad-CAM reads (see _last_conv); ConfigError for a model
    without a conv layer."""
    found = _last_conv(model)
    if found is None:
        raise ConfigError("Grad-CAM needs a conv layer and this model has none (an MLP); "
                          "choose saliency, ig or occlusion")
    return found


def _batch(x: np.ndarray) -> torch.Tensor:
    x = np.asarray(x, dtype=np.float32)
    if x.shape == (IMAGE_SIZE, IMAGE_SIZE):
        x = x[None]
    if x.ndim != 3 or x.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ImageError(f"a model input must be 28×28, got {x.shape}; run preprocess() first")
    return torch.from_numpy(np.ascontiguousarray(x)).reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE)


def _captum(model, inputs: torch.Tensor, method: str, target) -> torch.Tensor:
    """captum's attribution of `target` (an int or a (N,) tensor) for a batch -> (N, 1, 28, 28)."""
    from captum import attr
    if method == "saliency":
        return attr.Saliency(model).attribute(inputs, target=target, abs=False)
    if method == "ig":
        return attr.IntegratedGradients(model).attribute(
            inputs, baselines=torch.zeros_like(inputs), target=target, n_steps=IG_STEPS,
            internal_batch_size=max(IG_STEPS, len(inputs) * 8))
    if method == "occlusion":
        w, s = OCCLUSION_WINDOW, OCCLUSION_STRIDE
        return attr.Occlusion(model).attribute(inputs, sliding_window_shapes=(1, w, w), strides=(1, s, s),
                                               baselines=0.0, target=target, perturbations_per_eval=64)
    _, layer = last_conv(model)
    cam = attr.LayerGradCam(model, layer).attribute(inputs, target=target, relu_attributions=True)
    return attr.LayerAttribution.interpolate(cam, (IMAGE_SIZE, IMAGE_SIZE), interpolate_mode="bilinear")


def attribute_batch(model, x: np.ndarray, method: str, targets) -> np.ndarray:
    """(N, 28, 28) inputs, one target class index each (or one for all) -> (N, 28, 28) float32."""
    check_method(method)
    if method == "gradcam":
        last_conv(model)  # the clear message before any work
    inputs = _batch(x)
    target = torch.as_tensor(np.broadcast_to(np.asarray(targets, np.int64), (len(inputs),)).copy())
    was_training = model.training
    with _lock, torch.inference_mode(False), torch.enable_grad():
        model.eval()  # dropout off, batchnorm on its running statistics: as for a prediction
        try:
            out = _captum(model, inputs.clone().requires_grad_(True), method, target)
        finally:
            model.train(was_training)
    return out.detach().reshape(-1, IMAGE_SIZE, IMAGE_SIZE).float().numpy()


def attribute(model, x: np.ndarray, method: str, target: int) -> np.ndarray:
    """One (28, 28) input in [0, 1] -> the (28, 28) float32 attribution of class `target`."""
    from .predict import one_thread_for_few
    with one_thread_for_few(1):  # one small image: a second thread only waits (see predict)
        return attribute_batch(model, x, method, int(target))[0]


@torch.inference_mode()
def probabilities(model, x: np.ndarray) -> np.ndarray:
    """(N, 28, 28) -> (N, 10) softmax probabilities, eval mode."""
    return model(_batch(x)).float().softmax(1).numpy()


def explain(model, x: np.ndarray, method: str, target: str | int | None = None) -> dict[str, Any]:
    """One prepared input -> {"label", "index", "target", "target_index", "target_probability",
    "method", "attribution" (28, 28) float32}. target: a class name or index; None: the predicted one."""
    check_method(method)
    if method == "gradcam":
        last_conv(model)
    probs = probabilities(model, x)[0]
    k = int(probs.argmax())
    t = k if target is None else class_index(target)
    return {"label": CLASSES[k], "index": k, "target": CLASSES[t], "target_index": t,
            "target_probability": float(probs[t]), "method": method,
            "attribution": attribute(model, x, method, t)}


GARMENT_LEVEL = 0.1  # a pixel brighter than this (of 1) is the garment's: the background is black


def deletion_baselines(x: np.ndarray, fraction: float = 0.1, seed: int = 0) -> dict[str, np.ndarray]:
    """Which pixels to delete (N, k) without any model, to compare a method against:
      random     any `fraction` of the 784 pixels (mostly background, already black: a weak bar)
      garment    a random `fraction` of the garment's own pixels (the background only when the
                 garment has fewer): what deleting "somewhere on the garment" does
      intensity  the brightest `fraction`: the input's own pixels as the attribution ("just the
                 bright pixels"), the bar a method must clear to have found more than the garment
    """
    x = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
    n, d = x.shape
    k = int(round(fraction * d))
    rng = np.random.default_rng(seed)
    rand = np.stack([rng.choice(d, k, replace=False) for _ in range(n)])
    # garment first in a random order, then the rest in a random order; the first k of that
    keys = rng.random((n, d)) - (x > GARMENT_LEVEL)
    garment = np.argsort(keys, axis=1, kind="stable")[:, :k]
    intensity = np.argsort(-x, axis=1, kind="stable")[:, :k]
    return {"random": rand, "garment": garment, "intensity": intensity}


def deletion_check(model, x: np.ndarray, method: str, fraction: float = 0.1, seed: int = 0) -> dict[str, Any]:
    """Faithfulness on a batch of inputs (N, 28, 28): the predicted class's probability before, and
    after deleting (setting to 0, the background) the `fraction` of pixels with the highest
    attribution ("top"), or the baselines' pixels (deletion_baselines: random, garment,
    intensity). A faithful method's deletion lowers it more than the baselines'; `beats` says
    whether it beat the strongest of them (garment or intensity) by at least `BEAT_MARGIN`.
    -> {"method", "n", "before", "after_<name>", "drop_<name>" (means), "beats"}."""
    x = np.asarray(x, dtype=np.float32).reshape(-1, IMAGE_SIZE * IMAGE_SIZE)
    p0 = probabilities(model, x.reshape(-1, IMAGE_SIZE, IMAGE_SIZE))
    k = p0.argmax(1)
    attr = attribute_batch(model, x.reshape(-1, IMAGE_SIZE, IMAGE_SIZE), method, k).reshape(len(x), -1)
    n_del = int(round(fraction * x.shape[1]))
    chosen = {"top": np.argsort(-attr, axis=1, kind="stable")[:, :n_del], **deletion_baselines(x, fraction, seed)}
    rows = np.arange(len(x))[:, None]
    out: dict[str, Any] = {"method": method, "n": len(x), "before": float(p0[np.arange(len(x)), k].mean())}
    for name, idx in chosen.items():
        d = x.copy()
        d[rows, idx] = 0.0
        p = probabilities(model, d.reshape(-1, IMAGE_SIZE, IMAGE_SIZE))[np.arange(len(x)), k]
        out[f"after_{name}"] = float(p.mean())
        out[f"drop_{name}"] = out["before"] - float(p.mean())
    out["beats"] = out["drop_top"] >= max(out["drop_garment"], out["drop_intensity"]) + BEAT_MARGIN
    return out


# a method "beats" the model-free baselines when its deletion lowers the probability by this
# much more than the stronger of them (mean over the images; 200 images vary by ~0.01-0.02
# between random draws)
BEAT_MARGIN = 0.05


# --- the figures: speed and faithfulness on the shipped models ----------------------------

SPEED_GOAL_MS = {"saliency": 50, "gradcam": 50, "ig": 1000, "occlusion": 1000}


def _shipped() -> list[tuple[str, Any]]:
    from .data import ARTIFACTS
    from .models import load_model
    paths = [ARTIFACTS / "models" / f"{n}.pt" for n in ("cnn", "mlp")]
    return [(p.name, load_model(p)) for p in paths if p.is_file()]


def _test_images(n: int) -> np.ndarray:
    from .data import load
    return load().x_test[:n].astype(np.float32) / np.float32(255)


def bench(progress=None) -> list[dict[str, Any]]:
    """Median milliseconds of `attribute` for one test image, per method, on the shipped CNN and
    MLP (torch.utils.benchmark, at least 1 s of runs each), as it runs on the Predict page."""
    import os
    from torch.utils.benchmark import Timer
    from .device import machine_info
    x = _test_images(1)[0]
    cpu = machine_info().get("cpu")
    rows = []
    for name, model in _shipped():
        for method in methods_for(model):
            if progress:
                progress(f"timing {method} on {name}")
            attribute(model, x, method, 0)  # warm-up: captum's imports and torch's first call
            m = Timer("f()", globals={"f": lambda: attribute(model, x, method, 0)}).blocked_autorange(min_run_time=1.0)
            ms = m.median * 1e3
            rows.append({"model": name, "method": method, "median_ms": round(ms, 2), "runs": len(m.times) * m.number_per_run,
                         "goal_ms": SPEED_GOAL_MS[method], "meets_goal": ms <= SPEED_GOAL_MS[method],
                         "cpu": cpu, "load_average": [round(v, 2) for v in os.getloadavg()]})
    return rows


def deletion_figures(n: int = 200, progress=None) -> list[dict[str, Any]]:
    """deletion_check of every method on the first n test images, for each shipped model."""
    x = _test_images(n)
    rows = []
    for name, model in _shipped():
        for method in methods_for(model):
            if progress:
                progress(f"deletion check: {method} on {name}, {n} images")
            rows.append({"model": name, **{k: round(v, 4) if isinstance(v, float) else v
                                           for k, v in deletion_check(model, x, method).items()}})
    return rows
