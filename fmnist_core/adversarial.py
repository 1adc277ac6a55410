"""Adversarial examples: how little noise changes a model's answer (captum.robust FGSM / PGD).

Inputs are pixels in [0, 1] (the model normalizes inside), so epsilon is in pixel units: 8/255
means no pixel moves by more than 8 of the 255 gray levels. Every attack clamps to [0, 1].

  * attack_one(model, x, "FGSM" | "PGD", eps)  one 28x28 input, attacked away from the class the
                                            model gives it (a drawing has no true label): the
                                            perturbed image, the perturbation, both predictions
  * smallest_flip(model, x, attack)         the smallest epsilon that changes the predicted
                                            class, on a grid of one gray level (1/255) up to
                                            SEARCH_MAX. FGSM: its direction sign(gradient) does
                                            not depend on epsilon, so every grid point is tried
                                            in one batch (exact on the grid, no assumption).
                                            PGD: bisection on the same grid (assumes a larger
                                            radius flips whenever a smaller one does); either
                                            way the answer flips and one gray level less does not
  * robustness_curve(path, ds, attack)      test accuracy against epsilon, the attack aimed at
                                            the true class. FGSM on all 10,000 test images (one
                                            gradient, then one forward pass per epsilon); PGD
                                            on every 10th test image (1,000: ten steps each).
                                            Cached as JSON under artifacts/cache/robustness/,
                                            keyed by the checkpoint's SHA-256 and the settings

PGD: Madry et al.'s L-infinity attack, PGD_STEPS steps of 2.5 * eps / PGD_STEPS from the
clean image (no random start, so a result is reproducible). Bad input (an unknown attack, a
negative or too large epsilon) raises ConfigError with one sentence.

Left out: targeted attacks, L2 attacks, attacks on the NumPy twin (the same weights give the
same answers), adversarial training.
"""
from __future__ import annotations

import hashlib
import math
import os
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from .data import ARTIFACTS, CLASSES, IMAGE_SIZE
from .errors import CheckpointError, ConfigError
from .files import content_hash, read_json, write_json_atomic
from .predict import SMALL_BATCH, one_thread_for_few

ATTACKS = ("FGSM", "PGD")
MAX_EPSILON = 1.0          # a pixel cannot move further than the whole [0, 1] range
SEARCH_MAX = 0.5           # the smallest-flip search looks up to half the gray range ...
RESOLUTION = 1 / 255       # ... one gray level at a time
PGD_STEPS = 10
PGD_STEP_FACTOR = 2.5      # step size = 2.5 * eps / steps (Madry et al. 2018)
CURVE_EPSILONS = (0.0, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2)
PGD_SUBSET = 10            # PGD's curve: every 10th test image
BATCH = 1000
CACHE_VERSION = 1          # bump when the curve's computation changes: old files are not read


def check(attack: str, epsilon: float | None = None) -> str:
    """The attack's canonical name, or ConfigError: one sentence on what is wrong."""
    name = str(attack).upper()
    if name not in ATTACKS:
        raise ConfigError(f"unknown attack {attack!r}; choose one of {', '.join(ATTACKS)}")
    if epsilon is not None:
        try:
            e = float(epsilon)
        except (TypeError, ValueError):
            raise ConfigError(f"epsilon must be a number, got {epsilon!r}") from None
        if not math.isfinite(e) or e < 0 or e > MAX_EPSILON:
            raise ConfigError(f"epsilon must be between 0 and {MAX_EPSILON:g} (pixel units), got {epsilon!r}")
    return name


def _loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # per image: captum takes one gradient per input of the (N,) losses; its default loss,
    # -log(output), expects probabilities, and our models give logits
    return F.cross_entropy(logits, target, reduction="none")


def _tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(28, 28) / (N, 28, 28) uint8 or float in [0, 1] -> float32 (N, 1, 28, 28)."""
    # a copy: the shared dataset arrays are read-only
    t = x.detach().clone() if isinstance(x, torch.Tensor) else torch.from_numpy(np.array(x))
    t = t.float().div(255.0) if t.dtype == torch.uint8 else t.float()
    return t.reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE)


def perturb(model: torch.nn.Module, x, target, attack: str, epsilon: float) -> torch.Tensor:
    """A batch attacked away from `target` (class indices): (N, 1, 28, 28) in [0, 1], each pixel
    within epsilon of the input. The model runs in eval mode (dropout off, batchnorm's running
    statistics untouched) and is left as it was."""
    name = check(attack, epsilon)
    x = _tensor(x)
    target = torch.as_tensor(np.asarray(target), dtype=torch.long).reshape(-1)
    if epsilon == 0:
        return x.clone()
    with _evaluating(model), warnings.catch_warnings():
        # captum says each time that it switched on the input's gradient, which is what we want
        warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
        return _captum(model, name, x, target, float(epsilon)).detach()


@contextmanager
def _evaluating(model: torch.nn.Module, n: int = SMALL_BATCH + 1):
    """The model in eval mode (dropout off, batchnorm's running statistics untouched), put back
    as it was after; on one torch thread for a few images (predict.one_thread_for_few)."""
    was_training = model.training
    model.eval()
    try:
        with one_thread_for_few(n):
            yield
    finally:
        model.train(was_training)


def _captum(model, name: str, x: torch.Tensor, target: torch.Tensor, epsilon: float) -> torch.Tensor:
    from captum.robust import FGSM, PGD
    if name == "FGSM":
        return FGSM(model, _loss, lower_bound=0.0, upper_bound=1.0).perturb(x, epsilon, target)
    return PGD(model, _loss, lower_bound=0.0, upper_bound=1.0).perturb(
        x, radius=epsilon, step_size=PGD_STEP_FACTOR * epsilon / PGD_STEPS, step_num=PGD_STEPS, target=target)


@torch.inference_mode()
def _probs(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    return model(x).float().softmax(1).numpy()


def attack_one(model: torch.nn.Module, x: np.ndarray, attack: str, epsilon: float) -> dict[str, Any]:
    """One prepared 28x28 input attacked away from the class the model gives it.

    Returns {"attack", "epsilon", "adversarial" (28, 28) float32 in [0, 1], "perturbation"
    (adversarial - input), "before" / "after": {"index", "label", "probability", "probs"},
    "flipped": the predicted class changed}."""
    name = check(attack, epsilon)
    x0 = _tensor(x)
    if len(x0) != 1:
        raise ConfigError(f"attack() takes one 28×28 image, got {len(x0)}")
    with _evaluating(model, 1):
        p0 = _probs(model, x0)[0]
        k0 = int(p0.argmax())
        adv = perturb(model, x0, [k0], name, float(epsilon))
        p1 = _probs(model, adv)[0]
    k1 = int(p1.argmax())
    a = adv[0, 0].numpy()
    return {"attack": name, "epsilon": float(epsilon), "adversarial": a, "perturbation": a - x0[0, 0].numpy(),
            "before": _pred(p0), "after": _pred(p1), "flipped": k1 != k0}


def _pred(p: np.ndarray) -> dict[str, Any]:
    k = int(p.argmax())
    return {"index": k, "label": CLASSES[k], "probability": float(p[k]), "probs": p}


def smallest_flip(model: torch.nn.Module, x: np.ndarray, attack: str = "FGSM",
                  resolution: float = RESOLUTION, search_max: float = SEARCH_MAX) -> dict[str, Any]:
    """The smallest epsilon on the grid k * resolution (k = 1 .. search_max / resolution) at
    which `attack` changes the model's predicted class (see the module docstring for how).

    Returns {"attack", "resolution", "search_max", "epsilon" (None when nothing up to
    search_max flips it), "result" (attack_one() at that epsilon, or None), "tried": number of
    epsilons evaluated, "method"}."""
    name = check(attack, search_max)
    if not 0 < resolution <= search_max:
        raise ConfigError(f"the search resolution must be above 0 and at most {search_max:g}, got {resolution!r}")
    x0 = _tensor(x)
    n = int(round(search_max / resolution))
    grid = np.arange(1, n + 1) * resolution
    found: float | None = None
    with _evaluating(model, 1):
        k0 = int(_probs(model, x0)[0].argmax())
        if name == "FGSM":
            # one gradient sign, every epsilon at once: x + eps * sign(grad), clamped
            unit = perturb(model, x0, [k0], "FGSM", 1.0) - x0          # sign(grad), clamped at 0/1 edges
            direction = torch.sign(unit)
            eps = torch.as_tensor(grid, dtype=torch.float32).reshape(-1, 1, 1, 1)
            batch = (x0 + eps * direction).clamp(0.0, 1.0)
            with torch.inference_mode():
                flips = model(batch).argmax(1).numpy() != k0
            tried = n
            if flips.any():
                found = float(grid[int(np.argmax(flips))])
            method = f"FGSM at all {n} grid points, in one batch"
        else:
            def flips_at(k: int) -> bool:
                adv = perturb(model, x0, [k0], "PGD", float(grid[k]))
                with torch.inference_mode():
                    return int(model(adv).argmax(1)) != k0
            tried = 1
            if flips_at(n - 1):
                lo, hi = -1, n - 1          # grid[lo] does not flip (lo = -1: epsilon 0), grid[hi] does
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    tried += 1
                    if flips_at(mid):
                        hi = mid
                    else:
                        lo = mid
                found = float(grid[hi])
            method = (f"bisection over the {n} grid points (assumes a larger radius flips whenever a "
                      "smaller one does)")
    return {"attack": name, "resolution": float(resolution), "search_max": float(search_max),
            "epsilon": found, "result": attack_one(model, x, name, found) if found is not None else None,
            "tried": tried, "method": method}




# --- the robustness curve over the test set --------------------------------------------------

def cache_dir() -> Path:
    """artifacts/cache/robustness/ (under $FMNIST_ARTIFACTS when it is set, read now: tests and
    servers point it elsewhere after import)."""
    return Path(os.environ.get("FMNIST_ARTIFACTS") or ARTIFACTS) / "cache" / "robustness"


def file_hash(path: str | Path) -> str:
    """The checkpoint's SHA-256: the cache key (a retrained or replaced file is a new key)."""
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return content_hash(path)


def _settings(name: str, epsilons) -> dict[str, Any]:
    subset = 1 if name == "FGSM" else PGD_SUBSET
    s = {"version": CACHE_VERSION, "attack": name, "epsilons": [float(e) for e in epsilons],
         "every_nth_test_image": subset}
    if name == "PGD":
        s |= {"steps": PGD_STEPS, "step_size": f"{PGD_STEP_FACTOR:g} * epsilon / {PGD_STEPS}"}
    return s


def cache_path(checkpoint: str | Path, attack: str = "FGSM", epsilons=CURVE_EPSILONS) -> Path:
    """Where this checkpoint's curve for these settings is (or will be) cached."""
    name = check(attack)
    settings = _settings(name, epsilons)
    key = hashlib.sha256(repr(sorted(settings.items())).encode()).hexdigest()[:12]
    return cache_dir() / f"{file_hash(checkpoint)}-{name.lower()}-{key}.json"


def cached_curve(checkpoint: str | Path, attack: str = "FGSM", epsilons=CURVE_EPSILONS) -> dict | None:
    """The cached curve, or None when it has not been computed (a damaged file counts as none)."""
    got = read_json(cache_path(checkpoint, attack, epsilons))
    if isinstance(got, dict) and isinstance(got.get("accuracy"), list):
        return got
    return None


def robustness_curve(checkpoint: str | Path, ds, attack: str = "FGSM", epsilons=CURVE_EPSILONS,
                     progress: Callable[[float, str], None] | None = None) -> dict[str, Any]:
    """Test accuracy at each epsilon, read from the cache or computed and cached.

    Returns {"attack", "epsilons", "accuracy" (one per epsilon), "n" (images), "every_nth_test_image",
    "seconds" (to compute), "cached" (True when read from disk), "checkpoint_sha256", ...settings}."""
    from .models import load_model
    name = check(attack)
    for e in epsilons:
        check(name, e)
    epsilons = [float(e) for e in epsilons]
    if not epsilons:
        raise ConfigError("give at least one epsilon for the robustness curve")
    path = cache_path(checkpoint, name, epsilons)
    got = cached_curve(checkpoint, name, epsilons)
    if got is not None:
        return {**got, "cached": True}
    settings = _settings(name, epsilons)
    step = settings["every_nth_test_image"]
    x_all, y_all = ds.x_test[::step], np.asarray(ds.y_test[::step], dtype=np.int64)
    model = load_model(checkpoint)
    correct = np.zeros(len(epsilons), dtype=np.int64)
    batches = range(0, len(y_all), BATCH)
    t0 = time.perf_counter()
    for b, i in enumerate(batches):
        x, y = _tensor(x_all[i:i + BATCH]), torch.from_numpy(y_all[i:i + BATCH])
        if name == "FGSM":
            # one gradient per batch serves every epsilon: x + eps * sign(grad)
            direction = torch.sign(perturb(model, x, y, "FGSM", 1.0) - x)
        for j, e in enumerate(epsilons):
            if progress:
                done = (b * len(epsilons) + j) / (len(batches) * len(epsilons))
                progress(done, f"{name}, epsilon {e:g}: images {i + 1:,}–{min(i + BATCH, len(y_all)):,} "
                               f"of {len(y_all):,}")
            adv = (x + e * direction).clamp(0, 1) if name == "FGSM" else perturb(model, x, y, name, e)
            with torch.inference_mode():
                correct[j] += int((model(adv).argmax(1) == y).sum())
    out = {**settings, "n": int(len(y_all)), "accuracy": (correct / len(y_all)).tolist(),
           "seconds": round(time.perf_counter() - t0, 2), "checkpoint_sha256": path.name.split("-")[0]}
    write_json_atomic(path, out)
    if progress:
        progress(1.0, "done")
    return {**out, "cached": False}
