"""`train_numpy`: train an MLP (or a ResNet) from scratch with NumPy, and `check_trainable`.

The loop a course teaches: shuffle, mini-batches, forward through the layers of
twin.layers, softmax cross-entropy, backward, an optimizer step from twin.optim,
optional L1 / L2, flips and shifts, validation after every epoch, early stopping.
It honours the contract of the PyTorch trainer (`train.train`): the same arguments,
the same events, statuses, messages and history rows, all through `epochs.EpochLog`,
and it hands back a torch `FashionNet` holding the learned weights, so a NumPy run
is saved, evaluated and shown like any other.

Left out on purpose: CNNs (`check_trainable` says so: the twin runs trained CNNs for
inference only), bf16, and any device but the CPU.
"""
from __future__ import annotations

import contextlib
import math
import time

import numpy as np
import torch

from ..data import IMAGE_SIZE, train_val_split
from ..epochs import EpochLog, confusion_counts
from ..errors import ConfigError
from ..models import ModelConfig, build_model
from .layers import NumpyMLP, SoftmaxCrossEntropy
from .optim import lr_schedule, make_optimizer


def _augment(xb: np.ndarray, cfg, rng: np.random.Generator) -> np.ndarray:
    """Random horizontal flips and shifts of a (N, 28, 28) batch, as train._augment does."""
    n, side = len(xb), IMAGE_SIZE
    if cfg.augment_flip:
        flip = rng.random(n) < 0.5
        xb = np.where(flip[:, None, None], xb[:, :, ::-1], xb)
    s = cfg.augment_shift
    if s:
        pad = np.pad(xb, ((0, 0), (s, s), (s, s)))        # shifted-in pixels are black
        dy, dx = rng.integers(0, 2 * s + 1, n), rng.integers(0, 2 * s + 1, n)
        ar = np.arange(side)
        rows = (ar[None, :] + dy[:, None])[:, :, None]     # (N, 28, 1)
        cols = (ar[None, :] + dx[:, None])[:, None, :]     # (N, 1, 28)
        xb = pad[np.arange(n)[:, None, None], rows, cols]  # (N, 28, 28)
    return xb


def _as_float(x: np.ndarray) -> np.ndarray:
    """Pixels (uint8) scaled to [0, 1]; a head's features (heads.py) as they are, in float32."""
    return np.multiply(x, 1 / 255.0, dtype=np.float32) if x.dtype == np.uint8 else np.array(x, dtype=np.float32)


def check_trainable(model_config: ModelConfig, cfg) -> None:
    """Raise ConfigError, saying why, when train_numpy cannot train this model/config pair."""
    if model_config.kind not in ("mlp", "resnet", "head"):
        raise ConfigError("the NumPy engine trains MLPs and ResNets only (and heads on cached features); "
                          "train CNNs with the torch engine (the manual twin still runs trained CNNs for "
                          "inference and compare)")
    if cfg.device not in ("auto", "cpu"):
        raise ConfigError(f"the NumPy engine runs on the CPU only; choose device auto or cpu, "
                          f"not {cfg.device!r} (the torch engine uses {cfg.device})")
    if cfg.precision == "bf16":
        raise ConfigError("the NumPy engine trains in fp32 only; choose precision auto or fp32")


@contextlib.contextmanager
def _blas_threads(n: int):
    """Limit the BLAS thread pool to n inside the block (a no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits  # comes with scikit-learn
    except ImportError:
        yield
        return
    with threadpool_limits(n, user_api="blas"):
        yield


def train_numpy(model_config: ModelConfig, cfg, data, callback=None, should_stop=None, on_best=None,
                train_limit: int | None = None):
    """Train an MLP from scratch with NumPy; the same contract as `train.train`.

    Events, statuses, messages, history rows, early stopping and `on_best` behave as
    there; `result.model` is a torch FashionNet holding the learned weights (CPU, eval).
    """
    cfg.validate()
    check_trainable(model_config, cfg)
    # one BLAS thread unless told otherwise: mini-batch GEMMs are too small to split, and
    # on a busy 2-core machine two spinning threads made (64, 784) @ (784, 128) take
    # 12.8 ms instead of 1.0 ms. Overflow in a diverging run is reported as status
    # "diverged", not as a screen of RuntimeWarnings.
    with _blas_threads(cfg.threads or 1), np.errstate(over="ignore", invalid="ignore"):
        return _train_numpy(model_config, cfg, data, callback, should_stop, on_best, train_limit)


def _train_numpy(model_config, cfg, data, callback, should_stop, on_best, train_limit):
    rng = np.random.default_rng(cfg.seed)  # init, shuffling, dropout and augmentation

    tr_idx, val_idx = train_val_split(len(data.y_train), cfg.val_fraction, cfg.seed)
    if train_limit:
        tr_idx = tr_idx[:train_limit]
    x_tr = _as_float(data.x_train[tr_idx])  # (n, 28, 28); or (n, D) features for a head
    y_tr = data.y_train[tr_idx].astype(np.int64)
    x_val = _as_float(data.x_train[val_idx])
    y_val = data.y_train[val_idx].astype(np.int64)

    net = NumpyMLP(model_config, rng)
    opt = make_optimizer(cfg)
    loss_fn = SoftmaxCrossEntropy(cfg.label_smoothing)
    plist = net.parameters()
    l1_params = [(layer, k) for _, layer, k in plist if layer.params[k].ndim > 1]  # weights, as train.py
    n = len(y_tr)
    steps = math.ceil(n / cfg.batch_size)
    total_steps = cfg.epochs * steps

    schedule = lr_schedule(cfg, total_steps)  # stepped per batch, as train.py steps its scheduler

    def to_torch(sd):
        return {k: torch.from_numpy(np.array(v)) for k, v in sd.items()}

    log = EpochLog(cfg, callback, on_best)
    log.start(steps, n, len(y_val), "cpu", "fp32")
    t = 0
    for epoch in range(1, cfg.epochs + 1):
        t_epoch = time.perf_counter()
        perm = rng.permutation(n)
        xs, ys = x_tr[perm], y_tr[perm]  # one gather per epoch; batches are then views
        loss_sum, correct, seen = 0.0, 0, 0
        for b in range(steps):
            xb = xs[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            yb = ys[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            if cfg.augment_flip or cfg.augment_shift:
                xb = _augment(xb, cfg, rng)
            logits = net.forward(xb, train=True)            # (B, 28, 28) -> (B, 10)
            loss = loss_fn.forward(logits, yb)
            if cfg.l1:
                loss += cfg.l1 * sum(float(np.abs(layer.params[k]).sum()) for layer, k in l1_params)
            net.backward(loss_fn.backward())
            if cfg.l1:
                for layer, k in l1_params:
                    layer.grads[k] = layer.grads[k] + cfg.l1 * np.sign(layer.params[k])
            opt.lr, momentum = schedule(t)
            if momentum is not None:
                opt.set_momentum(momentum)
            opt.step([layer.params[k] for _, layer, k in plist], [layer.grads[k] for _, layer, k in plist])
            t += 1
            loss_sum += loss * len(yb)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(yb)
            if not math.isfinite(loss_sum):
                log.diverged(epoch, b + 1)
                break
            if log.after_batch(epoch, b + 1, steps, lambda: (loss_sum / seen, correct / seen), should_stop):
                break
        if log.status != "finished":
            break
        row = {"epoch": epoch, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
               "lr": schedule(t)[0], "epoch_seconds": time.perf_counter() - t_epoch}
        if len(y_val):
            vlogits = np.concatenate([net.forward(x_val[i:i + 4000]) for i in range(0, len(y_val), 4000)])
            row["val_loss"] = SoftmaxCrossEntropy().forward(vlogits, y_val)
            row["val_accuracy"] = float((vlogits.argmax(1) == y_val).mean())
            row["val_confusion"] = confusion_counts(y_val, vlogits.argmax(1))
        if log.end_epoch(row, lambda: to_torch(net.state_dict())):  # early stop, or the time limit
            break
    seconds = log.elapsed()
    model = build_model(model_config)
    model.load_state_dict(log.best_state if log.best_state is not None else to_torch(net.state_dict()))
    return log.finish(model.eval(), seconds, "cpu", "fp32")
