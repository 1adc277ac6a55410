"""Helpers for the twin's tests (tests/test_twin_*.py): the stated tolerances, the PyTorch
side of every comparison, and a trained checkpoint of every preset.

The tolerances are the issue's bars:
* LOGIT_TOL: float32 logits and layer outputs of the twin vs the nn.Module, max |difference|;
* GRAD_TOL: float64 gradients of the hand-written backward vs torch.autograd, relative.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fmnist_core import models
from fmnist_core.data import PROJECT_ROOT
from fmnist_core.evaluate import images_to_tensor, predict_logits
from fmnist_core.train import TrainConfig, train

LOGIT_TOL = 1e-4   # the bar for float32 logits
GRAD_TOL = 1e-5    # the bar for float64 gradients (relative)

# cnn-seed002 has ~22 M multiply-adds per image: 10,000 images take seconds even in torch
# the speedrun presets are left out: their whitening conv feeds 18 channels at 28x28 into the
# next conv, and the twin on all 10,000 test images took 2-4 minutes each under load; their layer
# kinds are all here, and test_speedrun.py checks the twin on a trained speedrun-93
PRESETS = [pytest.param(n, marks=pytest.mark.slow) if n == "cnn-seed002" else n for n in models.preset_names()
           if not n.startswith("speedrun-")]

# every layer kind: each activation, batchnorm on and off, every pooling, odd kernel sizes
LAYER_CONFIGS = [models.MLPConfig(hidden=(48, 24), activation=a, batchnorm=bn, dropout=d)
                 for a, bn, d in [("relu", False, 0.0), ("tanh", True, 0.1), ("sigmoid", True, 0.0),
                                  ("leaky_relu", False, 0.3), ("gelu", True, 0.0)]]
LAYER_CONFIGS += [models.CNNConfig(channels=(4, 6, 5), kernel=k, pool=p, pool_every=1, max_pools=mp,
                                   fc=(20, 12), activation=a, batchnorm=bn, dropout=0.2)
                  for k, p, mp, a, bn in [(3, "max", 2, "relu", True), (5, "avg", 3, "gelu", False),
                                          (7, "max", 4, "leaky_relu", True), (1, "avg", 1, "tanh", False)]]
# ResNets: identity and 1x1-conv shortcuts, 1 to 3 stages (28 -> 14 -> 7 -> 4: an odd size halved)
LAYER_CONFIGS += [models.ResNetConfig(stem=4, stages=st, blocks=b, activation=a, dropout=d)
                  for st, b, a, d in [((4, 6, 8), 2, "relu", 0.0), ((6,), 1, "gelu", 0.2),
                                      ((4, 8, 8, 6), 1, "leaky_relu", 0.0)]]


def layer_config_id(cfg) -> str:
    return f"{cfg.kind}-{cfg.activation}"


def rel_err(a, b, floor: float = 1e-10) -> float:
    """max |a - b| relative to max |b|. The floor handles gradients that are zero in exact
    arithmetic (a linear layer's bias right before batchnorm): both sides are then ~1e-18
    of rounding noise, and only an absolute comparison means anything."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), floor))


def to_np(a) -> np.ndarray:
    """A twin's output (NumPy, or a torch tensor from TorchOpsNet) as an ndarray."""
    return a.numpy() if hasattr(a, "numpy") else a


def torch_logits(model, x) -> np.ndarray:
    """The nn.Module's logits; CNNs channels-last, oneDNN's faster layout on the CPU (same math)."""
    if model.config.kind == "mlp":
        return predict_logits(model, x).numpy()
    model = model.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        out = [model(images_to_tensor(x[i:i + 1000]).contiguous(memory_format=torch.channels_last))
               for i in range(0, len(x), 1000)]
    model.to(memory_format=torch.contiguous_format)
    return torch.cat(out).numpy()


def torch_layers(model, x) -> list[tuple[str, np.ndarray]]:
    """Every child's output of an nn.Sequential: exactly its forward, one module at a time."""
    h, out = images_to_tensor(x), []
    with torch.no_grad():
        for name, module in model.named_children():
            h = module(h)
            out.append((name, h.numpy()))
    return out


def random_model(cfg):
    """A model of cfg in eval mode with seeded random weights, batchnorm away from the
    identity (or it would test nothing)."""
    torch.manual_seed(1)
    model = models.build_model(cfg).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return model


def assert_every_layer_matches(net, model, x):
    """The twin's forward_layers and forward against the nn.Module's children on x, within 1e-5."""
    theirs = torch_layers(model, x)
    ours = net.forward_layers(x)
    assert [n for n, _ in ours] == [n for n, _ in theirs]
    for (n, a), (_, b) in zip(ours, theirs):
        a = to_np(a)
        assert a.shape == b.shape and float(np.abs(a - b).max()) <= 1e-5, n
    logits = to_np(net.forward(x))
    assert float(np.abs(logits - theirs[-1][1]).max()) <= 1e-5


# --- trained checkpoints of every preset ----------------------------------------------

_CHECKPOINTS: dict[str, str] = {}  # one per test session, whichever test file asks first


@pytest.fixture(scope="session")
def preset_checkpoint(tmp_path_factory, ds):
    """preset name -> checkpoint path: a shipped model when one exists, else a brief training.
    Test files import this fixture; the cache above keeps it one training per preset."""

    def get(name: str) -> str:
        if name in _CHECKPOINTS:
            return _CHECKPOINTS[name]
        # a shipped model that does not load is a failure here, never a reason to test another
        for path in sorted((PROJECT_ROOT / "artifacts" / "models").glob("*.pt")):
            ck = models.read_checkpoint(path)
            if (ck.get("metrics") or {}).get("preset") == name:
                models.load_model(path)  # still fits today's layer plan
                _CHECKPOINTS[name] = str(path)
                return _CHECKPOINTS[name]
        # a few steps: weights that are no longer the initial ones, in seconds even for 5 convs
        p = models.preset(name)
        cfg = TrainConfig(epochs=1, batch_size=64, val_fraction=0.0, device="cpu", precision="fp32", seed=0)
        res = train(p["model"], cfg, ds, train_limit=256 if p["model"].kind in models.CONV_KINDS else 4096)
        path = tmp_path_factory.mktemp("ckpt") / f"{name}.pt"
        models.save_checkpoint(path, res.model, metrics={"preset": name})
        _CHECKPOINTS[name] = str(path)
        return _CHECKPOINTS[name]
    return get
