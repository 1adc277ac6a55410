"""Where the seed-001 MLP's training step goes (`python -m fmnist_core bench-train --mlp-steps`):
the same 784-128-64-10 ReLU MLP, Adam 1e-3, batch 32, the 48,000 images of the 80/20 split, one
epoch per variant, one thread, each timed in wall and process-CPU seconds:

    autograd+fused      the trainer's step (train.py): autograd, Adam(fused=True), batches as views
    autograd+foreach    the same with Adam(foreach=True)
    autograd+forloop    the same with Adam's per-tensor Python loop (foreach=False)
    by-hand+fused       no autograd: forward and backward written out with addmm / mm / a ReLU mask
                        (the NumPy twin's math in torch ops), then torch._fused_adam_ on all six
                        tensors at once: the fewest operator calls a step can make in eager PyTorch
    matmuls-only        only the step's six matmuls (forward 3, backward 3 weight grads + 2 input
                        grads in 5 calls) on the same shapes: the floor no rewrite of the step beats

and a torch.profiler table of the trainer's step (self CPU time per operator, grouped) so the
share of the matmuls, the optimizer and autograd's bookkeeping is measured, not guessed. The
ratio to the DataLoader epoch uses the DataLoader loop of the same run (speed.mlp_dataloader_epoch).

Left out: torch.compile of the whole step (speed.py times the compiled forward: slower here
at batch 32); a GPU (one small step per launch is latency-bound there too).
"""
from __future__ import annotations

import time
from typing import Callable

import torch
import torch.nn.functional as F

from ..data import FashionMNIST, train_val_split
from ..evaluate import images_to_tensor
from ..models import build_model, preset

BATCH = 32


def _data(data: FashionMNIST) -> tuple[torch.Tensor, torch.Tensor]:
    tr_idx, _ = train_val_split(len(data.y_train), 0.2, 0)
    return images_to_tensor(data.x_train[tr_idx]), torch.as_tensor(data.y_train[tr_idx], dtype=torch.long)


def _timed(fn: Callable[[], None]) -> dict:
    t, c = time.perf_counter(), time.process_time()
    fn()
    return {"wall_s": round(time.perf_counter() - t, 3), "cpu_s": round(time.process_time() - c, 3)}


def autograd_epoch(x: torch.Tensor, y: torch.Tensor, adam: dict, steps: int | None = None) -> Callable[[], None]:
    """The trainer's loop (one epoch, or `steps` steps) with Adam built with `adam` options."""
    torch.manual_seed(0)
    model = build_model(preset("mlp-seed001")["model"])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, **adam)
    n = len(y) if steps is None else steps * BATCH

    def run() -> None:
        perm = torch.randperm(len(y))[:n]
        xs, ys = x[perm], y[perm]
        for b in range(0, n, BATCH):
            loss = F.cross_entropy(model(xs[b:b + BATCH]), ys[b:b + BATCH])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    run.params = list(model.parameters())  # for the test that the by-hand step does the same
    return run


def by_hand_epoch(x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """Forward and backward written out (shapes in the comments), fused Adam on all tensors."""
    torch.manual_seed(0)
    model = build_model(preset("mlp-seed001")["model"])
    w1, b1, w2, b2, w3, b3 = (p.detach().clone() for p in model.parameters())
    params = [w1, b1, w2, b2, w3, b3]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    vmax: list[torch.Tensor] = []
    steps = [torch.zeros(()) for _ in params]
    mean, std = float(model.norm.mean), float(model.norm.std)

    @torch.no_grad()
    def run() -> None:
        perm = torch.randperm(len(y))
        xs = ((x[perm] - mean) / std).reshape(len(y), -1)  # normalised once per epoch: (N, 784)
        ys = y[perm]
        eye = torch.eye(10)
        for b in range(0, len(y), BATCH):
            xb, yb = xs[b:b + BATCH], ys[b:b + BATCH]
            h1 = torch.addmm(b1, xb, w1.T).relu_()              # (B, 784) -> (B, 128)
            h2 = torch.addmm(b2, h1, w2.T).relu_()              # (B, 128) -> (B, 64)
            logits = torch.addmm(b3, h2, w3.T)                  # (B, 64) -> (B, 10)
            g = (logits.softmax(1) - eye[yb]).div_(len(yb))     # dL/dlogits of the mean cross-entropy
            g3, gb3 = g.T @ h2, g.sum(0)                        # (10, 64), (10,)
            d2 = (g @ w3).mul_(h2 > 0)                          # (B, 64) through the ReLU
            g2, gb2 = d2.T @ h1, d2.sum(0)
            d1 = (d2 @ w2).mul_(h1 > 0)                         # (B, 128)
            g1, gb1 = d1.T @ xb, d1.sum(0)
            for s in steps:
                s += 1
            torch._fused_adam_(params, [g1, gb1, g2, gb2, g3, gb3], m, v, vmax, steps, lr=1e-3, beta1=0.9,
                               beta2=0.999, weight_decay=0.0, eps=1e-8, amsgrad=False, maximize=False)
    run.params = params
    return run


def matmuls_only_epoch(x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """The step's matrix products alone, same shapes: the floor of any rewrite."""
    w1, w2, w3 = torch.randn(128, 784), torch.randn(64, 128), torch.randn(10, 64)
    xs = x.reshape(len(y), -1)

    @torch.no_grad()
    def run() -> None:
        for b in range(0, len(y), BATCH):
            xb = xs[b:b + BATCH]
            h1 = xb @ w1.T
            h2 = h1 @ w2.T
            g = h2 @ w3.T
            d2 = g @ w3
            d1 = d2 @ w2
            g3, g2, g1 = g.T @ h2, d2.T @ h1, d1.T @ xb  # noqa: F841 (weight gradients)
    return run


def profile_step(x: torch.Tensor, y: torch.Tensor, steps: int = 300) -> list[dict]:
    """torch.profiler over `steps` of the trainer's step: self CPU time grouped into what it is."""
    from torch.profiler import ProfilerActivity, profile
    run = autograd_epoch(x, y, {"fused": True}, steps=steps)
    run()  # warm-up: first-call allocations outside the profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    groups: dict[str, float] = {}
    total = 0.0
    for e in prof.key_averages():
        us = e.self_cpu_time_total
        total += us
        name = e.key
        if name in ("aten::addmm", "aten::mm", "aten::matmul"):
            g = "matmuls (addmm, mm)"
        elif "adam" in name.lower() or name.startswith("Optimizer."):
            g = "optimizer (fused Adam kernel + its Python wrapper)"
        elif "Backward" in name or name.startswith("autograd::") or "backward" in name:
            g = "autograd (backward nodes, engine)"
        elif name in ("aten::relu", "aten::threshold_backward", "aten::log_softmax", "aten::_log_softmax",
                      "aten::nll_loss", "aten::nll_loss_forward", "aten::_log_softmax_backward_data",
                      "aten::nll_loss_backward", "aten::sub", "aten::div", "aten::clamp_min"):
            g = "elementwise (ReLU, softmax, loss, normalisation)"
        else:
            g = "other (views, copies, allocations, zero_grad)"
        groups[g] = groups.get(g, 0.0) + us
    # the profiler's own cost inflates every operator (several times over at ~30 us per op):
    # the shares are the finding, the profiled milliseconds only say how much was recorded
    return [{"what": g, "profiled_ms_per_step": round(us / 1000 / steps, 4), "share": round(us / total, 3)}
            for g, us in sorted(groups.items(), key=lambda kv: -kv[1])]


def mlp_step_breakdown(data: FashionMNIST, progress: Callable[[str], None] = lambda s: None) -> dict:
    """Each variant's epoch (one thread), the matmul floor and the profile, in one run."""
    from .speed import mlp_dataloader_epoch_times
    torch.set_num_threads(1)
    x, y = _data(data)
    variants = {"autograd+fused": autograd_epoch(x, y, {"fused": True}),
                "autograd+foreach": autograd_epoch(x, y, {"foreach": True}),
                "autograd+forloop": autograd_epoch(x, y, {"foreach": False}),
                "by-hand+fused": by_hand_epoch(x, y),
                "matmuls-only": matmuls_only_epoch(x, y)}
    out: dict = {"steps_per_epoch": -(-len(y) // BATCH), "epochs": {}}
    for name, run in variants.items():
        progress(f"mlp-seed001 epoch, {name}...")
        run()  # a first epoch warms the allocator and the kernels' caches
        out["epochs"][name] = _timed(run)
    progress("mlp-seed001 conventional DataLoader loop, 1 thread...")
    wall, cpu = mlp_dataloader_epoch_times(data, 1.0, 1)
    out["dataloader"] = {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3)}
    for row in out["epochs"].values():
        row["speedup_wall"] = round(out["dataloader"]["wall_s"] / row["wall_s"], 2)
        row["speedup_cpu"] = round(out["dataloader"]["cpu_s"] / row["cpu_s"], 2)
    progress("torch.profiler, 300 steps of the trainer's step...")
    out["profile"] = profile_step(x, y)
    return out
