"""twin.optim against torch.optim: the same parameters and gradients in, the same parameters
out after every step (float64, relative error <= 1e-12); the schedules give torch's learning
rate (and OneCycle's momentum) at every one of 137 steps."""
import numpy as np
import pytest
import torch

from fmnist_core.train import TrainConfig
from fmnist_core.twin.optim import SGD, Adam, lr_schedule
from twin_util import rel_err


@pytest.mark.parametrize("name,kw", [("sgd", {"momentum": 0.9, "weight_decay": 1e-3}),
                                     ("sgd", {"momentum": 0.0, "weight_decay": 0.0}),
                                     ("adam", {"weight_decay": 1e-3}), ("adamw", {"weight_decay": 0.05})])
def test_optimizers_follow_torch(name, kw):
    rng = np.random.default_rng(0)
    ps = [rng.normal(size=(7, 5)), rng.normal(size=5)]
    tps = [torch.tensor(p, requires_grad=True) for p in ps]
    lr = 0.05
    if name == "sgd":
        ours, theirs = SGD(lr, **kw), torch.optim.SGD(tps, lr=lr, **kw)
    else:
        ours = Adam(lr, kw["weight_decay"], decoupled=name == "adamw")
        theirs = (torch.optim.AdamW if name == "adamw" else torch.optim.Adam)(tps, lr=lr, **kw)
    for _ in range(5):
        gs = [rng.normal(size=p.shape) for p in ps]
        ours.step(ps, gs)
        for t, g in zip(tps, gs):
            t.grad = torch.from_numpy(g.copy())
        theirs.step()
    for p, t in zip(ps, tps):
        assert rel_err(p, t.detach()) <= 1e-12


@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_schedules_follow_torch(schedule, optimizer):
    total = 137
    cfg = TrainConfig(schedule=schedule, optimizer=optimizer, lr=0.01, epochs=1)
    ours = lr_schedule(cfg, total)
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([p], lr=0.01) if optimizer == "adam" else torch.optim.SGD([p], lr=0.01, momentum=0.9)
    sched = (torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=total) if schedule == "onecycle"
             else torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total))
    for t in range(total):
        lr, momentum = ours(t)
        group = opt.param_groups[0]
        assert lr == pytest.approx(group["lr"], rel=1e-9, abs=1e-15), t
        if schedule == "onecycle":
            assert momentum == pytest.approx(group["betas"][0] if optimizer == "adam" else group["momentum"]), t
        else:
            assert momentum is None
        opt.step()
        sched.step()
