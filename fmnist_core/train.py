"""The in-memory trainer: the whole training set lives in one tensor, batches are
slices of a per-epoch permutation (no per-sample PIL transforms, no DataLoader).

Offers Adam / AdamW / SGD+momentum, schedules none / OneCycle / cosine, L1 and
L2 penalties, tensor-level augmentation (flip, shifts), early stopping on
validation accuracy or loss that restores the best weights, bf16 autocast where the
hardware pays for it, cancellation, and NaN/inf detection (status `diverged`).

It returns a `TrainResult` and reports progress through `callback(event)`;
it never prints and knows nothing of files, the CLI or the dashboard. The result,
the events and the per-epoch bookkeeping are shared with the NumPy twin's trainer
and live in `epochs`.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from .data import FashionMNIST, train_val_split
from .device import autocast, resolve_device, resolve_precision
from .epochs import EpochLog, TrainResult, confusion_counts
from .errors import ConfigError, WorkbenchError
from .evaluate import images_to_tensor, predict_logits
from .models import CONV_KINDS, ModelConfig, build_model

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("none", "onecycle", "cosine")
EARLY_STOP_ON = ("val_accuracy", "val_loss")  # the validation figure that picks the best epoch


@dataclass
class TrainConfig:
    epochs: int = 10               # the course projects trained for 10
    batch_size: int = 64           # small batches generalise well on 48k images
    optimizer: str = "adam"        # adam: good results without tuning
    lr: float = 1e-3               # Adam's usual default; OneCycle uses it as the peak
    momentum: float = 0.9          # SGD only
    weight_decay: float = 0.0      # L2 (decoupled for AdamW)
    l1: float = 0.0                # L1 penalty on weights, added to the loss
    schedule: str = "none"         # none | onecycle | cosine
    val_fraction: float = 0.2      # 80/20 split, as the course projects did
    augment_flip: bool = False     # random horizontal flips (garments are ~symmetric)
    augment_shift: int = 0         # random shifts of up to N pixels
    label_smoothing: float = 0.0
    patience: int = 0              # early stopping after N epochs without a better val acc; 0 = off
    early_stop_on: str = "val_accuracy"  # val_accuracy | val_loss: what picks the best epoch and runs
                                   # out patience (seed 003 stopped on accuracy; on loss it disagrees)
    seed: int = 0                  # everything random derives from it
    device: str = "auto"           # auto | cpu | cuda | mps
    precision: str = "auto"        # auto | fp32 | bf16 (autocast; master weights stay fp32)
    channels_last: bool = True     # CNNs on CPU: faster convolutions (oneDNN)
    threads: int = 0               # torch threads; 0 = leave as is
    compile: bool = False          # torch.compile the model for training (needs a C++ compiler; any
                                   # failure falls back to eager, and history rows say which ran)
    max_seconds: float = 0.0       # stop after this much training time; 0 = no limit
    # the speedrun techniques (speedrun.py, airbench); the defaults leave every other run as it was
    flip_alternate: bool = False   # with augment_flip: each image flipped in every other epoch, not at random
    ema: float = 0.0               # decay of an EMA of the weights, evaluated and kept; 0 = off
    bn_bias_lr: float = 1.0        # batchnorm biases learn this many times faster (airbench: 64)
    progress_every: int = 20       # batch events (live curve points) every N batches

    def validate(self) -> None:
        checks = [
            (isinstance(self.epochs, int) and 1 <= self.epochs <= 1000, f"epochs must be 1..1000, got {self.epochs}"),
            (isinstance(self.batch_size, int) and 1 <= self.batch_size <= 60000,
             f"batch size must be 1..60000, got {self.batch_size}"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"),
            (math.isfinite(self.lr) and 0 < self.lr <= 10, f"learning rate must be in (0, 10], got {self.lr}"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (self.weight_decay >= 0, f"L2 / weight decay must be >= 0, got {self.weight_decay}"),
            (self.l1 >= 0, f"L1 must be >= 0, got {self.l1}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}"),
            (0 <= self.val_fraction <= 0.5, f"validation fraction must be in [0, 0.5], got {self.val_fraction}"),
            (0 <= self.augment_shift <= 4, f"shift augmentation must be 0..4 pixels, got {self.augment_shift}"),
            (0 <= self.label_smoothing < 1, f"label smoothing must be in [0, 1), got {self.label_smoothing}"),
            (self.patience >= 0, f"patience must be >= 0, got {self.patience}"),
            (not (self.patience and self.val_fraction == 0), "early stopping needs a validation split"),
            (self.early_stop_on in EARLY_STOP_ON,
             f"early stopping is on one of {', '.join(EARLY_STOP_ON)}, got {self.early_stop_on!r}"),
            (self.max_seconds >= 0, "max seconds must be >= 0"),
            (self.progress_every >= 1, "progress_every must be >= 1"),
            (self.ema == 0 or 0 < self.ema < 1, f"EMA decay must be 0 (off) or in (0, 1), got {self.ema}"),
            (0 < self.bn_bias_lr <= 1000, f"the batchnorm bias lr factor must be in (0, 1000], got {self.bn_bias_lr}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)


def _augment(xb: torch.Tensor, cfg: TrainConfig, gen: torch.Generator,
             flip: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample flips (random, or the given mask) and random shifts, vectorised over the batch."""
    n = xb.shape[0]
    if cfg.augment_flip:
        if flip is None:
            flip = torch.rand(n, generator=gen, device="cpu").to(xb.device) < 0.5
        xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
    s = cfg.augment_shift
    if s:
        pad = F.pad(xb, (s, s, s, s))
        size = xb.shape[-1]
        dy = torch.randint(0, 2 * s + 1, (n,), generator=gen).to(xb.device)
        dx = torch.randint(0, 2 * s + 1, (n,), generator=gen).to(xb.device)
        ar = torch.arange(size, device=xb.device)
        rows = (ar[None, :] + dy[:, None])[:, None, :, None].expand(n, 1, size, size + 2 * s)
        pad = pad.gather(2, rows)
        cols = (ar[None, :] + dx[:, None])[:, None, None, :].expand(n, 1, size, size)
        xb = pad.gather(3, cols)
    return xb


def _optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    # frozen layers (the speedrun's whitening conv) hold no optimizer state; batchnorm biases
    # get their own lr factor (airbench's scaled biases: they move the activations' offsets,
    # which a small lr leaves where the initialisation put them for most of a short run)
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.bn_bias_lr != 1.0:
        bn_bias = {id(m.bias) for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
        params = [{"params": [p for p in params if id(p) not in bn_bias]},
                  {"params": [p for p in params if id(p) in bn_bias], "lr": cfg.lr * cfg.bn_bias_lr}]
    # fused kernels (one pass over all parameters) where PyTorch has them for this device;
    # with batch 32 the optimizer step is a large share of each step's time
    fast = {"fused": True} if device.type in ("cpu", "cuda") else {"foreach": True}
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fast)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fast)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, **fast)


def compile_for_training(model: torch.nn.Module, enabled: bool) -> tuple[Callable, str]:
    """(the callable a training step runs, "compiled" | "eager" | "eager (why not compiled)").

    torch.compile (inductor, dynamic=False: one graph per batch shape) fuses the small
    elementwise ops of a step into generated C++ and cuts the per-op dispatch that
    dominates small-batch MLP steps on a CPU. It needs a working C++ compiler; without
    one, or when compiling fails (at the first call), training runs eagerly.
    """
    if not enabled:
        return model, "eager"
    import shutil
    if not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        return model, "eager (no C++ compiler for torch.compile)"
    try:
        return torch.compile(model, dynamic=False), "compiled"
    except Exception as exc:  # e.g. a platform torch.compile does not support
        return model, f"eager (torch.compile failed: {type(exc).__name__})"


def _scheduler(opt, cfg: TrainConfig, steps_per_epoch: int):
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in opt.param_groups],
                                                   total_steps=total)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    return None


def train(model_config: ModelConfig, cfg: TrainConfig, data: FashionMNIST,
          callback: Callable[[dict], None] | None = None,
          should_stop: Callable[[], bool] | None = None,
          on_best: Callable[[dict, dict], None] | None = None,
          train_limit: int | None = None, watch: tuple[np.ndarray, np.ndarray] | None = None) -> TrainResult:
    """Train a fresh model.

    callback(event): progress events (start, batch, epoch, end), plain dicts.
    should_stop(): polled every 10 batches; True cancels the run.
    on_best(state_dict, history_row): called whenever validation accuracy (or loss, with
      cfg.early_stop_on="val_loss") improves,
      so a caller can checkpoint the best weights as they appear.
    train_limit: use only the first N training images (after the split), for demos/tests.
    watch: (images, labels) scored at every epoch end for the record only (watch_loss,
      watch_accuracy, watch_confusion in the row); never used to pick the best epoch or to
      stop. `make models` watches the test set of models trained without a validation split.
    """
    cfg.validate()
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device, model_config.kind)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)

    tr_idx, val_idx = train_val_split(len(data.y_train), cfg.val_fraction, cfg.seed)
    if train_limit:
        tr_idx = tr_idx[:train_limit]
    x_tr = images_to_tensor(data.x_train[tr_idx]).to(device)
    y_tr = torch.as_tensor(data.y_train[tr_idx], dtype=torch.long).to(device)
    x_val, y_val = data.x_train[val_idx], data.y_train[val_idx]

    model = build_model(model_config).to(device)
    if getattr(model_config, "whiten", 0):
        from .speedrun import init_whitening
        init_whitening(model, x_tr)
    cl = cfg.channels_last and model_config.kind in CONV_KINDS and device.type != "mps"
    if cl:
        model = model.to(memory_format=torch.channels_last)
    opt = _optimizer(model, cfg, device)
    forward, step_kind = compile_for_training(model, cfg.compile)
    n = len(y_tr)
    steps = math.ceil(n / cfg.batch_size)
    sched = _scheduler(opt, cfg, steps)
    l1_params = [p for name, p in model.named_parameters() if p.dim() > 1 and p.requires_grad]
    ema = None
    if cfg.ema:
        from .speedrun import WeightEMA
        ema = WeightEMA(model, cfg.ema)
    kept = ema.model if ema is not None else model  # what is evaluated, snapshotted and returned
    flip_base = (torch.rand(n, generator=gen) < 0.5).to(device) if cfg.augment_flip and cfg.flip_alternate else None
    # a .item() is a sync on a GPU and a few microseconds on the CPU: check every 25 batches
    check_every = 25

    def snapshot() -> dict:
        return copy.deepcopy(kept.state_dict())

    log = EpochLog(cfg, callback, on_best)
    log.start(steps, n, len(y_val), str(device), precision)
    epoch = 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        t_epoch = time.perf_counter()
        perm = torch.randperm(n, generator=gen).to(device)
        xs, ys = x_tr[perm], y_tr[perm]  # one gather per epoch; batches are then views
        flips = None
        if flip_base is not None:
            from .speedrun import alternate_flips
            flips = alternate_flips(flip_base, epoch)[perm]
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        for b in range(steps):
            xb = xs[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            yb = ys[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            if cfg.augment_flip or cfg.augment_shift:
                xb = _augment(xb, cfg, gen, None if flips is None else
                              flips[b * cfg.batch_size:(b + 1) * cfg.batch_size])
            if cl:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast(device, precision):
                if step_kind == "compiled" and epoch == 1 and b == 0:
                    try:  # compiling happens here, at the first call: fall back if it cannot
                        logits = forward(xb)
                    except Exception as exc:
                        forward, step_kind = model, f"eager (torch.compile failed: {type(exc).__name__})"
                        logits = forward(xb)
                else:
                    logits = forward(xb)
            loss = F.cross_entropy(logits.float(), yb, label_smoothing=cfg.label_smoothing)
            if cfg.l1:
                loss = loss + cfg.l1 * sum(p.abs().sum() for p in l1_params)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema is not None:
                ema.update()
            if sched is not None:
                sched.step()
            loss_sum.add_(loss.detach(), alpha=len(yb))
            correct += (logits.detach().argmax(1) == yb).sum()
            seen += len(yb)
            if (b + 1) % check_every == 0 or b + 1 == steps:
                if not math.isfinite(loss_sum.item()):
                    log.diverged(epoch, b + 1)
                    break
            if log.after_batch(epoch, b + 1, steps, lambda: (loss_sum.item() / seen, correct.item() / seen),
                               should_stop):
                break
        if log.status != "finished":
            break
        epoch_seconds = time.perf_counter() - t_epoch
        row = {"epoch": epoch, "train_loss": loss_sum.item() / seen,
               "train_accuracy": correct.item() / seen, "lr": opt.param_groups[0]["lr"],
               "epoch_seconds": epoch_seconds}
        if cfg.compile:
            row["step"] = step_kind
        if len(y_val):
            logits = predict_logits(kept, x_val, batch_size=1000, device=device, precision=precision)
            yv = torch.as_tensor(y_val, dtype=torch.long)
            row["val_loss"] = F.cross_entropy(logits, yv).item()
            row["val_accuracy"] = (logits.argmax(1) == yv).float().mean().item()
            row["val_confusion"] = confusion_counts(yv, logits.argmax(1))
        if watch is not None:  # scored for the record only: it never picks an epoch or stops a run
            logits = predict_logits(kept, watch[0], batch_size=1000, device=device, precision=precision)
            yw = torch.tensor(watch[1], dtype=torch.long)
            row["watch_loss"] = F.cross_entropy(logits, yw).item()
            row["watch_accuracy"] = (logits.argmax(1) == yw).float().mean().item()
            row["watch_confusion"] = confusion_counts(yw, logits.argmax(1))
        if log.end_epoch(row, snapshot):  # early stop, or the time limit reached in this epoch
            break
    seconds = log.elapsed()
    if log.best_state is not None:
        model.load_state_dict(log.best_state)
    model = model.to("cpu", memory_format=torch.contiguous_format).eval()
    return log.finish(model, seconds, str(device), precision)


def trainer(engine: str):
    """The training function of an engine: `train` (PyTorch) or the NumPy twin's own
    `train_numpy`; both take (model config, TrainConfig, data, ...) and return a TrainResult."""
    if engine == "torch":
        return train
    if engine == "numpy":
        from .twin import train_numpy
        return train_numpy
    raise WorkbenchError(f"engine must be torch or numpy, got {engine!r}")


def train_config_from_dict(d: dict[str, Any]) -> TrainConfig:
    known = {f for f in TrainConfig.__dataclass_fields__}
    unknown = set(d) - known
    if unknown:
        raise ConfigError(f"unknown training options: {', '.join(sorted(unknown))}")
    cfg = TrainConfig(**d)
    cfg.validate()
    return cfg


def train_config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    return asdict(cfg)
