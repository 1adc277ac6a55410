"""A diagnosis in plain words: what a teacher would say when a run ends.

`diagnose(history, test_accuracy, status, lr)` reads a run's per-epoch rows (the history
both trainers return) and its final test accuracy, and returns `Finding`s: one sentence
each, with a severity (error | warning | info | ok), most serious first. The rules:

  * diverged       the loss became NaN/inf                     -> the learning rate is too high
  * near chance    accuracy within a few points of 10%         -> the network is not learning;
                   (guessing)                                     most often the learning rate
  * loss rising    training loss ends well above its lowest,   -> steps too big: lower the rate
                   or explodes past its first value
  * overfitting    training accuracy far above validation, or  -> dropout, augmentation, L2,
                   validation loss climbing from its low          early stopping
  * train longer   accuracy still low and still rising at the  -> more epochs
                   last epoch
  * healthy        none of the above                           -> one "ok" sentence

The held-out split is the validation set, or, for runs trained without one (the shipped
models), the test set watched at each epoch end (`watch_*`, see train.train).
Thresholds are Fashion-MNIST's: 10 classes, a small MLP reaches ~85% in one epoch and good
models 89-93%. Left out: anything that needs the weights or the data.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

CHANCE = 0.10            # ten classes
NEAR_CHANCE = 0.20       # below this the network has learned (almost) nothing
GAP = 0.05               # train accuracy this far above held-out accuracy: overfitting
VAL_LOSS_RISE = 1.10     # held-out loss 10% above its lowest by the end: overfitting
LOSS_RISE = 1.25         # training loss 25% above its lowest by the end: rising
LOW = 0.88               # below this a Fashion-MNIST model has room to learn
STILL_RISING = 0.003     # the last epoch gained at least 0.3 points of accuracy
SEVERITIES = ("error", "warning", "info", "ok")


@dataclass(frozen=True)
class Finding:
    severity: str   # error | warning | info | ok
    rule: str       # diverged | chance | loss_rising | overfitting | train_longer | healthy
    text: str


def _held_out(history: list[dict[str, Any]]) -> tuple[str, str]:
    """('val', 'validation') or ('watch', 'test'): the held-out split the rows carry."""
    if any(h.get("val_accuracy") is not None for h in history):
        return "val", "validation"
    if any(h.get("watch_accuracy") is not None for h in history):
        return "watch", "test"
    return "", ""


def _series(history: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    return [(int(h["epoch"]), float(h[key])) for h in history
            if isinstance(h.get(key), (int, float)) and math.isfinite(h[key])]


def diagnose(history: list[dict[str, Any]], test_accuracy: float | None = None,
             status: str = "finished", lr: float | None = None) -> list[Finding]:
    """Plain-words findings for a run, most serious first (never empty once a run has an
    epoch or a test accuracy; [] for a run with nothing to judge yet)."""
    history = [h for h in history or [] if "epoch" in h]
    lr_text = f" (now {lr:g})" if lr else ""
    out: list[Finding] = []
    if status == "diverged":
        out.append(Finding("error", "diverged",
                           f"The loss became NaN/inf: the training diverged. The learning rate is too "
                           f"high{lr_text}; try it 10 times smaller (Adam: 1e-3, SGD: 0.01-0.1)."))
    split, split_name = _held_out(history)
    final = test_accuracy
    if final is None and history:
        last = history[-1]
        final = last.get(f"{split}_accuracy") if split else last.get("train_accuracy")
    if not history and final is None:
        return out
    if final is not None and final < NEAR_CHANCE and status != "diverged":
        out.append(Finding("error", "chance",
                           f"Accuracy {final:.1%} is close to chance ({CHANCE:.0%}, guessing among ten "
                           f"classes): the network has not learned. Most often the learning rate is too "
                           f"high{lr_text}: try 1e-3 with Adam or 0.01-0.1 with SGD. If a smaller rate "
                           f"does not help, check that the network is not too small or too deep to train."))
    train_loss = _series(history, "train_loss")
    if len(train_loss) >= 2 and status != "diverged":
        first = train_loss[0][1]
        low_epoch, low = min(train_loss, key=lambda p: p[1])
        end_epoch, end = train_loss[-1]
        peak_epoch, peak = max(train_loss, key=lambda p: p[1])
        if peak > 2 * first and peak_epoch > train_loss[0][0]:
            out.append(Finding("error", "loss_rising",
                               f"The training loss exploded: {first:.3g} after epoch {train_loss[0][0]}, "
                               f"{peak:.3g} at epoch {peak_epoch}. The steps are too big: lower the "
                               f"learning rate{lr_text}."))
        elif end > LOSS_RISE * low and end_epoch > low_epoch:
            out.append(Finding("warning", "loss_rising",
                               f"The training loss went up: {low:.3g} at epoch {low_epoch}, {end:.3g} at "
                               f"epoch {end_epoch}. Training loss should fall; the learning rate{lr_text} is "
                               f"probably too high (or use a schedule that lowers it: onecycle, cosine)."))
    if split and (final is None or final >= NEAR_CHANCE):
        tr, ho = history[-1].get("train_accuracy"), history[-1].get(f"{split}_accuracy")
        ho_loss = _series(history, f"{split}_loss")
        rising_loss = None
        if len(ho_loss) >= 3:
            low_epoch, low = min(ho_loss, key=lambda p: p[1])
            if ho_loss[-1][1] > VAL_LOSS_RISE * low and ho_loss[-1][0] > low_epoch:
                rising_loss = (low_epoch, low, ho_loss[-1][1])
        if tr is not None and ho is not None and tr - ho > GAP:
            out.append(Finding("warning", "overfitting",
                               f"Overfitting: {tr:.1%} on the training images but {ho:.1%} on the "
                               f"{split_name} images at the last epoch. The network memorises the training "
                               f"set: try dropout, augmentation (shifts, flips), L2 or early stopping."))
        elif rising_loss:
            low_epoch, low, end = rising_loss
            out.append(Finding("warning", "overfitting",
                               f"Overfitting begins: the {split_name} loss was lowest at epoch {low_epoch} "
                               f"({low:.3f}) and rose to {end:.3f}. Early stopping would keep the better "
                               f"epoch; dropout or augmentation delay it."))
    acc_key = f"{split}_accuracy" if split else "train_accuracy"
    acc = _series(history, acc_key)
    tr_acc = _series(history, "train_accuracy")
    if (len(acc) >= 2 and len(tr_acc) >= 2 and NEAR_CHANCE <= acc[-1][1] < LOW
            and acc[-1][1] - acc[-2][1] >= STILL_RISING and tr_acc[-1][1] - tr_acc[-2][1] >= STILL_RISING
            and not any(f.rule in ("loss_rising", "overfitting") for f in out)):
        out.append(Finding("info", "train_longer",
                           f"Still learning: {split_name or 'training'} accuracy {acc[-1][1]:.1%} rose "
                           f"{acc[-1][1] - acc[-2][1]:.1%} in the last epoch and training accuracy is "
                           f"still rising too. Both are low: train for more epochs."))
    if not out:
        what = f"{final:.1%}" if final is not None else "the accuracy reached"
        close = (f", and training and {split_name} accuracy stay close." if split else
                 ". With no held-out split, overfitting cannot be seen from the curves.")
        out.append(Finding("ok", "healthy",
                           f"No problem found: the loss fell and {what} is well above chance{close}"))
    return sorted(out, key=lambda f: SEVERITIES.index(f.severity))
