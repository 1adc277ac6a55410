"""Optimizers and learning-rate schedules for the NumPy trainer, with torch's formulas.

`SGD` (with momentum), `Adam` and `AdamW` (Adam with decoupled weight decay) update
NumPy arrays in place exactly as torch.optim.SGD / Adam / AdamW update tensors;
`lr_schedule` gives the learning rate (and momentum) of every step as
torch.optim.lr_scheduler's CosineAnnealingLR and OneCycleLR do.

Tested step by step against torch.optim (tests/test_twin_optim.py).

References: PyTorch's docs of torch.optim.SGD, Adam, AdamW, CosineAnnealingLR and
OneCycleLR (the update rules and schedule formulas written out there).

Left out on purpose: every other optimizer and schedule (the workbench offers these
three and these two), parameter groups, and amsgrad / nesterov / maximize flags.
"""
from __future__ import annotations

import math

import numpy as np


class SGD:
    """torch.optim.SGD: g += wd * p; buf = momentum * buf + g (buf = g at first); p -= lr * buf."""

    def __init__(self, lr, momentum=0.0, weight_decay=0.0):
        self.lr, self.momentum, self.wd = lr, momentum, weight_decay
        self.buf: dict[int, np.ndarray] = {}

    def set_momentum(self, m: float) -> None:  # the OneCycle schedule moves it
        self.momentum = m

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        for i, (p, g) in enumerate(zip(params, grads)):
            if self.wd:
                g = g + self.wd * p            # coupled L2: part of the gradient
            if self.momentum:
                if i not in self.buf:
                    self.buf[i] = g.copy()
                else:
                    self.buf[i] *= self.momentum
                    self.buf[i] += g
                g = self.buf[i]
            p -= self.lr * g                   # in place: the layer holds this very array


class Adam:
    """torch.optim.Adam / AdamW (decoupled=True), betas (0.9, 0.999), eps 1e-8.

    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
    p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    Adam adds wd * p to g (coupled L2); AdamW shrinks p by (1 - lr wd) first.
    """

    def __init__(self, lr, weight_decay=0.0, decoupled=False, betas=(0.9, 0.999), eps=1e-8):
        self.lr, self.wd, self.decoupled = lr, weight_decay, decoupled
        self.b1, self.b2, self.eps = betas[0], betas[1], eps
        self.t = 0
        self.m: dict[int, np.ndarray] = {}
        self.v: dict[int, np.ndarray] = {}

    def set_momentum(self, m: float) -> None:  # the OneCycle schedule moves beta1
        self.b1 = m

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        self.t += 1
        b1, b2 = self.b1, self.b2
        step_size = self.lr / (1 - b1 ** self.t)
        sqrt_bc2 = math.sqrt(1 - b2 ** self.t)
        for i, (p, g) in enumerate(zip(params, grads)):
            if self.wd and self.decoupled:
                p *= 1 - self.lr * self.wd
            elif self.wd:
                g = g + self.wd * p
            if i not in self.m:
                self.m[i], self.v[i] = np.zeros_like(p), np.zeros_like(p)
            m, v = self.m[i], self.v[i]
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * (g * g)
            denom = np.sqrt(v)
            denom /= sqrt_bc2
            denom += self.eps
            p -= step_size * (m / denom)


def make_optimizer(cfg) -> SGD | Adam:
    """The optimizer a TrainConfig asks for."""
    if cfg.optimizer == "sgd":
        return SGD(cfg.lr, cfg.momentum, cfg.weight_decay)
    return Adam(cfg.lr, cfg.weight_decay, decoupled=cfg.optimizer == "adamw")


def lr_schedule(cfg, total_steps: int):
    """t -> (learning rate, momentum or None) for optimizer step t = 0, 1, ..., as torch's schedulers.

    cosine:   CosineAnnealingLR(T_max=total_steps, eta_min=0), in closed form.
    onecycle: OneCycleLR(max_lr=lr, total_steps) with its defaults: warm up from lr/25 to lr
              over the first 30% of steps, anneal to lr/25/1e4, both along a cosine; the
              momentum (SGD's momentum, Adam's beta1) moves 0.95 -> 0.85 -> 0.95 against it.
    """
    if cfg.schedule == "cosine":
        return lambda t: (0.5 * cfg.lr * (1 + math.cos(math.pi * t / total_steps)), None)
    if cfg.schedule != "onecycle":
        return lambda t: (cfg.lr, None)
    initial = cfg.lr / 25.0
    phases = [(float(0.3 * total_steps) - 1, initial, cfg.lr, 0.95, 0.85),
              (total_steps - 1, cfg.lr, initial / 1e4, 0.85, 0.95)]

    def cos(start, end, pct):
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)

    def at(t):
        start_step = 0.0
        for i, (end_step, lr0, lr1, m0, m1) in enumerate(phases):
            if t <= end_step or i == len(phases) - 1:
                pct = (t - start_step) / (end_step - start_step)
                return cos(lr0, lr1, pct), cos(m0, m1, pct)
            start_step = end_step
    return at
