"""twin.layers against torch.autograd, on the real Fashion-MNIST.

In the spirit of micrograd's test_engine.py: the same weights and inputs go through the
hand-written layer and through the torch module, and outputs and gradients are compared
within stated tolerances (relative error, float64):

* every layer on its own (Normalize, Flatten, Linear, BatchNorm1d in training and eval,
  each activation) and the loss: output and every gradient <= EXACT_TOL (1e-12); GELU uses
  an erf approximation (error < 1.2e-7): output <= 1e-6, gradients <= GRAD_TOL (1e-5);
* whole MLPs of every activation, with and without batchnorm: every parameter's gradient and
  dLoss/d(every layer's output) <= GRAD_TOL, the loss within 1e-8;
* dropout with its mask, GELU, erf; the in-place forms ManualNet uses equal the plain ones.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fmnist_core import models
from fmnist_core.twin.layers import (ACTIVATIONS, GELU, Dropout, NumpyMLP, SoftmaxCrossEntropy, erf, scale_shift,
                                     standardize)
from twin_util import GRAD_TOL, rel_err

EXACT_TOL = 1e-12  # float64, formulas without approximation: rounding differences only (seen: ~1e-15)


def _to_torch(sd):
    return {k: torch.from_numpy(np.array(v)) for k, v in sd.items()}


@pytest.mark.parametrize("act", models.ACTIVATIONS)
def test_each_layer_forward_and_backward_match_autograd(act, ds):
    """Layer by layer through norm, flatten, fc1, bn1, act1, out: each layer gets the input it
    has in the net (real images at the bottom) and a random upstream gradient."""
    cfg = models.MLPConfig(hidden=(24,), activation=act, batchnorm=True)
    net = NumpyMLP(cfg, np.random.default_rng(5), dtype=np.float64)
    model = models.build_model(cfg).double().train()
    model.load_state_dict(_to_torch(net.state_dict()))
    tol = (1e-6, GRAD_TOL) if act == "gelu" else (EXACT_TOL, EXACT_TOL)  # (output, gradients)
    rng = np.random.default_rng(1)
    h = ds.x_train[:32].astype(np.float64) / 255.0   # (32, 28, 28): what train_numpy feeds the net
    for layer, (name, module) in zip(net.layers, model.named_children(), strict=True):
        assert layer.name == name
        xt = torch.from_numpy(h.copy()).reshape((32, 1, 28, 28) if h.ndim == 3 else h.shape).requires_grad_(True)
        yt = module(xt)
        y = layer.forward(h, train=True)
        g = rng.normal(size=y.shape)
        yt.backward(torch.from_numpy(g).reshape(yt.shape))
        dx = layer.backward(g)
        assert y.shape == g.shape and rel_err(y, yt.detach().reshape(y.shape)) <= tol[0], name
        assert rel_err(dx, xt.grad.reshape(dx.shape)) <= tol[1], name
        assert set(layer.grads) == {k for k, _ in module.named_parameters()}, name
        for k, p in module.named_parameters():
            assert rel_err(layer.grads[k], p.grad) <= tol[1], f"{name}.{k}"
        if name == "bn1":  # the running statistics moved as torch's, and eval mode uses them
            assert rel_err(layer.running_mean, module.running_mean) <= EXACT_TOL
            assert rel_err(layer.running_var, module.running_var) <= EXACT_TOL
            with torch.no_grad():
                ref = module.eval()(xt).numpy()
            module.train()
            assert rel_err(layer.forward(h, train=False), ref) <= EXACT_TOL
        h = y


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_softmax_cross_entropy_matches_autograd(smoothing, ds):
    rng = np.random.default_rng(2)
    logits = ds.x_train[:64].reshape(64, -1).astype(np.float64) / 255.0 @ rng.normal(0, 0.3, (784, 10))
    y = ds.y_train[:64].astype(np.int64)
    loss_fn = SoftmaxCrossEntropy(smoothing)
    loss = loss_fn.forward(logits, y)
    lt = torch.from_numpy(logits).requires_grad_(True)
    loss_t = F.cross_entropy(lt, torch.from_numpy(y), label_smoothing=smoothing)
    loss_t.backward()
    assert abs(loss - loss_t.item()) <= EXACT_TOL * abs(loss_t.item())
    assert rel_err(loss_fn.backward(), lt.grad) <= EXACT_TOL


def test_in_place_forms_equal_the_plain_ones(ds):
    """ManualNet writes into arrays it owns (out=h); that must not change a single bit."""
    rng = np.random.default_rng(3)
    h = (ds.x_test[:100].reshape(100, -1) / np.float32(255) @ rng.normal(0, 0.1, (784, 32))).astype(np.float32)
    for name, fn in ACTIVATIONS.items():
        buf = h.copy()
        assert np.array_equal(fn(buf, out=buf), fn(h)), name
    mean, inv_std = h.mean(0), (1 / np.sqrt(h.var(0) + 1e-5)).astype(np.float32)
    gamma, beta = rng.uniform(0.5, 1.5, 32).astype(np.float32), rng.uniform(-0.3, 0.3, 32).astype(np.float32)
    plain = scale_shift(standardize(h, mean, inv_std), gamma, beta)
    buf = h.copy()
    assert np.array_equal(scale_shift(standardize(buf, mean, inv_std, out=buf), gamma, beta, out=buf), plain)
    assert np.array_equal(plain, (h - mean) * inv_std * gamma + beta)


def test_erf_is_accurate():
    x = np.linspace(-6, 6, 200001)
    ref = np.array([math.erf(v) for v in x])
    assert np.abs(erf(x) - ref).max() < 1e-7


# --- whole nets: NumPy backward vs torch.autograd, float64 ------------------------------

@pytest.mark.parametrize("act", models.ACTIVATIONS)
@pytest.mark.parametrize("batchnorm", [False, True])
def test_gradients_match_autograd(act, batchnorm, ds):
    cfg = models.MLPConfig(hidden=(40, 24), activation=act, batchnorm=batchnorm)
    net = NumpyMLP(cfg, np.random.default_rng(3), dtype=np.float64)
    model = models.build_model(cfg).double().train()
    model.load_state_dict(_to_torch(net.state_dict()))
    x = ds.x_train[:32].astype(np.float64) / 255.0
    y = ds.y_train[:32].astype(np.int64)

    loss_fn = SoftmaxCrossEntropy(label_smoothing=0.1)
    loss = loss_fn.forward(net.forward(x, train=True), y)
    dx = net.backward(loss_fn.backward(), input_grad=True)

    xt = torch.from_numpy(x).requires_grad_(True)
    h, outs = xt.reshape(32, 1, 28, 28), {}
    for name, module in model.named_children():
        h = module(h)
        h.retain_grad()
        outs[name] = h
    loss_t = F.cross_entropy(h, torch.from_numpy(y), label_smoothing=0.1)
    loss_t.backward()

    assert abs(loss - loss_t.item()) <= 1e-8  # erf's approximation (GELU) is good to ~1e-7
    grads = {name: layer.grads[k] for name, layer, k in net.parameters()}
    assert set(grads) == {n for n, _ in model.named_parameters()}
    for n, p in model.named_parameters():
        assert rel_err(grads[n], p.grad) <= GRAD_TOL, n
    for name, t in outs.items():  # dLoss/d(every layer's output)
        assert rel_err(net.out_grads[name].reshape(t.shape), t.grad) <= GRAD_TOL, name
    assert rel_err(dx.reshape(xt.shape), xt.grad) <= GRAD_TOL
    if batchnorm:  # the running statistics moved the same way
        sd = model.state_dict()
        for k, v in net.state_dict().items():
            assert rel_err(v, sd[k]) <= GRAD_TOL, k


def test_dropout_and_gelu_layers_match_autograd():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 30))
    g = rng.normal(size=(50, 30))
    drop = Dropout("d", 0.3, rng)
    y = drop.forward(x, train=True)
    assert np.allclose(y[drop.mask == 0], 0) and 0.2 < (drop.mask == 0).mean() < 0.4
    xt = torch.from_numpy(x).requires_grad_(True)
    (xt * torch.from_numpy(drop.mask)).backward(torch.from_numpy(g))  # same mask, by hand in torch
    assert rel_err(drop.backward(g), xt.grad) <= 1e-12
    assert drop.forward(x, train=False) is x  # evaluation: the identity

    gelu = GELU("g")
    xt = torch.from_numpy(x * 3).requires_grad_(True)
    yt = F.gelu(xt)
    yt.backward(torch.from_numpy(g))
    assert rel_err(gelu.forward(x * 3), yt.detach()) <= 1e-6
    assert rel_err(gelu.backward(g), xt.grad) <= GRAD_TOL
