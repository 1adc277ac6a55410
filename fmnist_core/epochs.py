"""What every trainer shares: the result it returns, the events it sends, and the
per-epoch bookkeeping behind them.

Two trainers honour one contract: `train.train` (PyTorch) and `twin.train_numpy`
(the NumPy twin). Both take a model config, a `train.TrainConfig`, the dataset,
`callback(event)`, `should_stop()` and `on_best(state_dict, row)`, and both return
a `TrainResult`. Everything that must read the same in both lives here, once:

* `TrainResult`: status (finished | cancelled | diverged), message, history rows,
  best epoch, and the model with the best weights;
* the events: start, batch, epoch, end, as plain dicts, in that order; a batch event is
  also a point of the live curves: the running training loss and accuracy of the epoch so
  far at a fractional epoch (`x`), every `progress_every` batches;
* `confusion_counts`: the (10, 10) confusion matrix an epoch row carries for its
  validation split (from the logits the trainer computed anyway, no second pass);
* the messages: cancelled, time limit, early stop, diverged, finished;
* `BestEpoch`: which epoch is best so far (on validation accuracy or loss) and when
  patience runs out;
* `EpochLog`: the clock, the history, the status, `on_best`, and the final result.

Left out on purpose: anything about tensors or arrays. How a batch is computed, how
the loss is summed and how weights are copied stay in each trainer; this module only
receives numbers, rows and callables.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:  # the annotation only: this module needs no torch
    from .models import FashionNet


@dataclass
class TrainResult:
    status: str                      # finished | cancelled | diverged
    message: str
    history: list[dict[str, Any]]
    best_epoch: int                  # 1-based; 0 when no epoch completed
    best_val_accuracy: float | None
    epochs_run: int
    train_seconds: float
    device: str
    precision: str
    model: FashionNet = field(repr=False)  # best weights loaded, eval mode, on the CPU


def diverged_message(epoch: int, batch: int, lr: float) -> str:
    """What both trainers say when the loss stops being a finite number."""
    return (f"the loss became NaN/inf in epoch {epoch}, batch {batch}: the run "
            f"diverged; try a smaller learning rate (now {lr:g})")


def confusion_counts(y_true, y_pred, n_classes: int = 10) -> list[list[int]]:
    """Rows: true class, columns: predicted class; plain ints, so a row stays JSON."""
    idx = np.asarray(y_true, dtype=np.int64) * n_classes + np.asarray(y_pred, dtype=np.int64)
    return np.bincount(idx, minlength=n_classes * n_classes).reshape(n_classes, n_classes).tolist()


class BestEpoch:
    """Which epoch is best so far, and when patience runs out. `on` is the validation figure
    that decides both: "val_accuracy" (higher is better) or "val_loss" (lower is better).
    Seed 003 found the two disagree: the loss can rise (the model grows overconfident on the
    examples it gets wrong) while the accuracy still creeps up, so on the loss a run stops
    sooner and keeps an earlier epoch."""

    def __init__(self, patience: int, on: str = "val_accuracy"):
        self.patience, self.on = patience, on
        self.best_score, self.best_acc, self.best_epoch, self.since_best = None, -1.0, 0, 0

    def update(self, row: dict[str, Any]) -> bool:
        """Record a finished epoch; True when it is the best so far. Without a validation
        split every epoch is: the last one is the best we know."""
        score = row.get(self.on)
        if score is not None and self.on == "val_loss":
            score = -score  # one comparison below: higher is better
        improved = score is None or self.best_score is None or score > self.best_score
        if improved:
            acc = row.get("val_accuracy")
            self.best_score = score
            self.best_acc = -1.0 if acc is None else acc  # the kept epoch's accuracy, whatever picked it
            self.best_epoch, self.since_best = row["epoch"], 0
        else:
            self.since_best += 1
        return improved

    def stop_message(self, epoch: int) -> str:
        """Non-empty when early stopping ends the run after `epoch`."""
        if self.patience and self.since_best >= self.patience:
            what = "validation loss" if self.on == "val_loss" else "validation accuracy"
            return (f"early stop after epoch {epoch}: no better {what} for "
                    f"{self.patience} epoch{'s' if self.patience != 1 else ''}; best was epoch {self.best_epoch}")
        return ""

    @property
    def best_val_accuracy(self) -> float | None:
        """The validation accuracy of the best epoch (the one whose weights are kept)."""
        return self.best_acc if self.best_acc >= 0 else None


class EpochLog:
    """One run's bookkeeping, from the start event to the `TrainResult`.

    A trainer makes one right before its first batch (the clock starts then) and tells
    it what happened: `start`, `after_batch` after every batch, `diverged` when the loss
    is no longer finite, `end_epoch` with each epoch's history row, `finish` at the end.
    `status` stays "finished" unless the run is cancelled or diverges; `message` is set
    by whatever ends the run early (cancel, time limit, early stop, divergence).
    """

    def __init__(self, cfg, callback: Callable[[dict], None] | None = None,
                 on_best: Callable[[dict, dict], None] | None = None):
        self.cfg = cfg
        self.emit = callback or (lambda event: None)
        self.on_best = on_best
        self.history: list[dict[str, Any]] = []
        self.best = BestEpoch(cfg.patience, cfg.early_stop_on)
        self.best_state: dict | None = None   # what the trainer's snapshot returned for the best epoch
        self.status, self.message = "finished", ""
        self.t_start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t_start

    def start(self, steps_per_epoch: int, train_size: int, val_size: int, device: str, precision: str) -> None:
        self.emit({"event": "start", "epochs": self.cfg.epochs, "steps_per_epoch": steps_per_epoch,
                   "train_size": train_size, "val_size": val_size, "device": device, "precision": precision})

    def diverged(self, epoch: int, batch: int) -> None:
        self.status, self.message = "diverged", diverged_message(epoch, batch, self.cfg.lr)

    def after_batch(self, epoch: int, batch: int, steps: int, running: Callable[[], tuple[float, float]],
                    should_stop: Callable[[], bool] | None) -> bool:
        """Batch `batch` (1-based) is done: progress event, cancellation, time limit.
        True: leave the epoch now. running() returns the epoch's running (mean loss,
        accuracy) so far; it is called only for a progress event (on a GPU reading the
        sums the trainer keeps on the device is a synchronization)."""
        cfg = self.cfg
        if batch % cfg.progress_every == 0:
            loss, acc = running()
            self.emit({"event": "batch", "epoch": epoch, "batch": batch, "steps": steps,
                       "x": round(epoch - 1 + batch / steps, 4), "loss": loss, "accuracy": acc,
                       "elapsed": self.elapsed()})
        if should_stop is not None and batch % 10 == 0 and should_stop():
            self.status, self.message = "cancelled", f"cancelled in epoch {epoch}, batch {batch}"
            return True
        if cfg.max_seconds and self.elapsed() > cfg.max_seconds:
            # status stays "finished": the epoch still gets its history row
            self.message = f"time limit of {cfg.max_seconds:g} s reached in epoch {epoch}"
            return True
        return False

    def end_epoch(self, row: dict[str, Any], snapshot: Callable[[], dict]) -> bool:
        """Record a finished epoch's row; True when the run ends here (early stop, or the
        time limit reached during the epoch). snapshot() returns a copy of the weights as
        a state_dict of torch tensors; it is taken, and `on_best` called with it, only
        when this epoch is the best so far."""
        row["elapsed"] = self.elapsed()
        self.history.append(row)
        if self.best.update(row):
            self.best_state = snapshot()
            if self.on_best is not None:
                self.on_best(self.best_state, row)
        self.emit({"event": "epoch", **row, "epochs": self.cfg.epochs, "best_epoch": self.best.best_epoch})
        self.message = self.best.stop_message(row["epoch"]) or self.message
        return bool(self.message)

    def finish(self, model: FashionNet, seconds: float, device: str, precision: str) -> TrainResult:
        """The result (model: best weights, eval mode, CPU) and the end event."""
        if self.status == "finished" and not self.message:
            n = len(self.history)
            # rounded as the run's status stores train_seconds (2 decimals), so the message and
            # the page's "training alone" figure never read 0.3 s and 0.2 s for one 0.2549 s
            self.message = f"finished {n} epoch{'s' if n != 1 else ''} in {round(seconds, 2):.1f} s"
        result = TrainResult(status=self.status, message=self.message, history=self.history,
                             best_epoch=self.best.best_epoch, best_val_accuracy=self.best.best_val_accuracy,
                             epochs_run=len(self.history), train_seconds=seconds, device=device,
                             precision=precision, model=model)
        self.emit({"event": "end", "status": self.status, "message": self.message})
        return result
