"""twin.step against PyTorch, on real training images, in float64.

A torch model starts from the twin's initial weights and takes the same batches with torch.optim
(SGD, SGD with momentum, Adam), in lockstep with the Stepper; after every step each number the
page shows (probabilities, dLoss/dlogits, every layer's output gradient of the shown images,
every weight gradient, every update) must equal autograd's within 1e-6, for MLPs and CNNs.
Also: Reset replays bit for bit; a conv pixel's explanation is the layer's output, and its
backward shares add up to the layer's gradients; the templates show what they claim; the size
limits refuse with a sentence; pooling's backward by hand equals torch's.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fmnist_core import models
from fmnist_core.errors import ConfigError
from fmnist_core.twin.layers import Pool2d
from fmnist_core.twin.conv_pixel import explain_conv_pixel
from fmnist_core.twin.step import MAX_PARAMETERS, SHOW, Stepper, check_size, tied_below
from fmnist_core.views import step as view

TOL = 1e-6
MLP = models.MLPConfig(hidden=(32, 16))
MLP_BN = models.MLPConfig(hidden=(32, 16), batchnorm=True, activation="tanh")
CNN_MAX = models.CNNConfig(channels=(4, 8), kernel=3, fc=(16,))
CNN_AVG = models.CNNConfig(channels=(3, 6), kernel=5, pool="avg", fc=(12,), batchnorm=True)


def _torch_twin(stepper: Stepper, kind: str, lr: float, momentum: float):
    model = models.build_model(stepper.config).double().train()
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in stepper.net.state_dict().items()})
    params = list(model.parameters())
    opt = (torch.optim.Adam(params, lr=lr) if kind == "adam" else
           torch.optim.SGD(params, lr=lr, momentum=momentum if kind == "momentum" else 0.0))
    return model, opt


def _torch_step(model, opt, x, y):
    """One autograd step; returns probs, dlogits, each layer's output gradient (channels-last),
    weight gradients and the weights after."""
    h = torch.from_numpy(x).reshape(len(x), 1, 28, 28)
    outs = {}
    for name, module in model.named_children():
        h = module(h)
        if h.requires_grad:
            h.retain_grad()
            outs[name] = h
    loss = F.cross_entropy(h, torch.from_numpy(y))
    opt.zero_grad()
    loss.backward()
    act = {n: (t.grad.permute(0, 2, 3, 1) if t.grad.ndim == 4 else t.grad).numpy().copy() for n, t in outs.items()}
    grads = {n: p.grad.numpy().copy() for n, p in model.named_parameters()}
    before = {n: p.detach().numpy().copy() for n, p in model.named_parameters()}
    opt.step()
    after = {n: p.detach().numpy().copy() for n, p in model.named_parameters()}
    return {"loss": float(loss.detach()), "probs": torch.softmax(h, 1).detach().numpy(), "dlogits": act["out"],
            "act": act, "grads": grads, "update": {n: after[n] - before[n] for n in after}}


def _worst(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max())


@pytest.mark.parametrize("cfg", [MLP, MLP_BN, CNN_MAX, CNN_AVG], ids=["mlp", "mlp-bn-tanh", "cnn-max", "cnn-avg-bn"])
@pytest.mark.parametrize("kind,lr", [("sgd", 0.1), ("momentum", 0.05), ("adam", 0.01)])
def test_every_shown_gradient_and_update_equals_autograd(ds, cfg, kind, lr):
    stepper = Stepper(cfg, ds.x_train, ds.y_train, batch_size=12, seed=3, optimizer=kind, lr=lr, momentum=0.9,
                      same_batch=False)
    model, opt = _torch_twin(stepper, kind, lr, 0.9)
    for _ in range(3):
        x, y, _ = stepper.batch(stepper.t)
        rec = stepper.step()
        ref = _torch_step(model, opt, x, y)
        assert abs(rec.loss - ref["loss"]) <= TOL
        assert _worst(rec.probs, ref["probs"][:SHOW]) <= TOL
        assert _worst(rec.dlogits, ref["dlogits"][:SHOW]) <= TOL
        # under a max pooling whose window held a tie, either tied pixel may take the gradient
        # (tied_below says why): those layers' activation gradients are not compared
        tied = tied_below(stepper.plan, [d["out"] for d in rec.layers])
        compared = 0
        for d in rec.layers:
            if d["grad"] is None or d["name"] in tied:
                continue
            assert _worst(d["grad"], ref["act"][d["name"]][:SHOW]) <= TOL, d["name"]
            compared += 1
        assert compared >= 4
        for n in rec.grads:
            assert _worst(rec.grads[n], ref["grads"][n]) <= TOL, n
            assert _worst(rec.update(n), ref["update"][n]) <= TOL, n
        assert rec.check["largest"] <= TOL  # the figure the page shows agrees
    if kind == "adam":
        assert rec.optimizer["t"] == 3 and set(rec.optimizer["m"]) == set(rec.grads)


def test_reset_replays_the_same_trajectory_exactly(ds):
    s = Stepper(CNN_AVG, ds.x_train, ds.y_train, batch_size=16, seed=7, optimizer="adam", lr=0.01, same_batch=False)
    first = [s.step(check=False).loss for _ in range(4)]
    params = {k: v.copy() for k, v in s.params().items()}
    hist = [h["layers"] for h in s.history]
    s.reset()
    assert s.t == 0 and s.history == [] and s.opt.t == 0
    again = [s.step(check=False).loss for _ in range(4)]
    assert again == first
    assert all(np.array_equal(params[k], v) for k, v in s.params().items())
    assert [h["layers"] for h in s.history] == hist
    # a different seed starts elsewhere: the replay is the seed's, not a constant
    other = Stepper(CNN_AVG, ds.x_train, ds.y_train, batch_size=16, seed=8, optimizer="adam", lr=0.01,
                    same_batch=False)
    assert other.step(check=False).loss != first[0]


def test_same_batch_is_learned_and_epoch_batches_cover_the_data(ds):
    s = Stepper(MLP, ds.x_train, ds.y_train, batch_size=32, optimizer="sgd", lr=0.1)
    r = s.run(20)
    assert r.step == 20 and r.loss < s.history[0]["loss"] / 2  # one batch, learned
    assert r.loss_after < r.loss
    s2 = Stepper(MLP, ds.x_train[:100], ds.y_train[:100], batch_size=32, same_batch=False)
    seen = np.concatenate([s2.batch(t)[2] for t in range(s2.steps_per_epoch())])
    assert sorted(seen) == list(range(100))  # one epoch: every image once
    # no caches kept between steps: a session holds weights and optimizer state only
    assert not any(hasattr(layer, "cols") or hasattr(layer, "x") for layer in s.net.layers)


@pytest.mark.parametrize("cfg", [CNN_MAX, CNN_AVG,
                                 models.CNNConfig(channels=(4, 6), kernel=3, fc=(8,), batchnorm=True,
                                                  pool_first=True)], ids=["max", "avg-bn", "pool-first"])
def test_conv_pixel_explanation_is_the_layer_output_and_its_gradients(ds, cfg):
    s = Stepper(cfg, ds.x_train, ds.y_train, batch_size=SHOW, seed=1, optimizer="sgd", lr=0.1, same_batch=False)
    s.step()
    rec = s.step()                                     # a second step: weights that have moved
    rng = np.random.default_rng(0)
    for layer in ("conv1", "conv2"):
        d = next(e for e in rec.layers if e["name"] == layer)
        n, h, w, o = d["out"].shape
        for _ in range(20):                            # forward: patch x kernel + bias = the output
            img, c, r, col = rng.integers(n), rng.integers(o), rng.integers(h), rng.integers(w)
            e = explain_conv_pixel(rec, layer, c, r, col, img)
            assert abs(e["value"] - e["layer_value"]) <= 1e-12
            assert abs(e["value"] - float(d["out"][img, r, col, c])) <= 1e-12
            assert e["chain"], "what follows the conv at that pixel"
            prev = e["layer_value"]
            for step in e["chain"]:
                if step["kind"] == "act":                  # relu of what came before, at that pixel
                    assert step["value"] == max(prev, 0.0)
                if step["kind"] == "pool" and step["type"] == "max":
                    assert step["value"] == pytest.approx(float(step["window"].max()))
                if step["kind"] == "pool" and step["type"] == "avg":
                    assert step["value"] == pytest.approx(float(step["window"].mean()))
                prev = step.get("value", prev)
        # backward: every pixel's shares add up to the weight gradient and to the input gradient
        k, p = d["args"]["kernel"], d["args"]["padding"]
        c = 1
        kernel_grad = np.zeros_like(rec.grads[f"{layer}.weight"][c])
        for img in range(n):
            for r in range(h):
                for col in range(w):
                    kernel_grad += explain_conv_pixel(rec, layer, c, r, col, img)["kernel_grad"]
        assert _worst(kernel_grad, rec.grads[f"{layer}.weight"][c]) <= 1e-12
    below = rec.layers[[e["name"] for e in rec.layers].index("conv2") - 1]
    img = 2
    x_grad = np.zeros((h + 2 * p, w + 2 * p, below["out"].shape[-1]))
    for c in range(o):
        for r in range(h):
            for col in range(w):
                e = explain_conv_pixel(rec, "conv2", c, r, col, img)
                x_grad[r:r + k, col:col + k] += e["input_grad"].transpose(1, 2, 0)
    assert _worst(x_grad[p:p + h, p:p + w], below["grad"][img]) <= 1e-12


@pytest.mark.parametrize("model,batch", [("mlp-seed000", 256), ("cnn-seed003", 64)])
def test_a_session_holds_a_few_megabytes(ds, model, batch):
    # the largest batch each allows: what one browser tab keeps between steps, with its last record
    s = view.make_stepper({"model": model, "optimizer": "adam", "batch": batch, "same_batch": False},
                          ds.x_train, ds.y_train)
    rec = s.run(2)
    params = models.plan_parameters(s.config)
    assert s.nbytes() >= 3 * 8 * params          # weights, Adam's m and v, in float64
    assert rec.nbytes() >= 5 * 8 * params        # before, after, gradients, m, v
    assert s.nbytes() + rec.nbytes() <= 12 * 2**20, (s.nbytes(), rec.nbytes())


def test_conv_pixel_refuses_what_is_not_there(ds):
    s = Stepper(CNN_MAX, ds.x_train, ds.y_train, batch_size=4)
    rec = s.step(check=False)
    with pytest.raises(ConfigError, match="not a conv layer"):
        explain_conv_pixel(rec, "fc1", 0, 0, 0)
    with pytest.raises(ConfigError, match="4 channels of 28×28"):
        explain_conv_pixel(rec, "conv1", 4, 0, 0)


def _norms(ds, name, seeds=(0, 1, 2)):
    """Per seed, every weighted layer's gradient norm over the last layer's, at the first step."""
    out = []
    for seed in seeds:
        s = view.make_stepper({**view.template_choice(name), "seed": seed}, ds.x_train, ds.y_train)
        s.step(check=False)
        layers = s.history[-1]["layers"]
        out.append({k: d["grad_norm"] / layers["out"]["grad_norm"] for k, d in layers.items() if "grad_norm" in d})
        assert out[-1]["fc1"] == view.gradient_ratio(s.history[-1])
    return out


def test_templates_vanishing_vs_healthy_gradients(ds):
    vanishing, healthy = _norms(ds, "vanishing"), _norms(ds, "healthy")
    assert all(r["fc1"] <= 1 / 100 for r in vanishing), vanishing   # the first layer: >= 100x below
    assert all(1 / 10 <= v <= 10 for r in healthy for v in r.values()), healthy  # every layer within 10x


def test_templates_exploding_and_momentum(ds):
    s = view.make_stepper(view.template_choice("exploding"), ds.x_train, ds.y_train)
    s.run(30)
    losses = [h["loss"] for h in s.history]
    assert max(losses) > 3 * losses[0]                     # the loss jumps up instead of down
    assert s.history[1]["layers"]["fc1"]["update_ratio"] > 0.01
    tail = {}
    for name in ("no-momentum", "momentum"):
        s = view.make_stepper(view.template_choice(name), ds.x_train, ds.y_train)
        s.run(100)
        tail[name] = np.mean([h["loss"] for h in s.history[-20:]])
    assert tail["momentum"] < 0.8 * tail["no-momentum"], tail


def test_size_limits_refuse_with_a_sentence():
    with pytest.raises(ConfigError, match="ResNet is too deep"):
        check_size(models.ResNetConfig(), 8)
    with pytest.raises(ConfigError, match="dropout"):
        check_size(models.MLPConfig(dropout=0.2), 8)
    with pytest.raises(ConfigError, match=f"at most {MAX_PARAMETERS:,}"):
        check_size(models.MLPConfig(hidden=(512,)), 8)
    with pytest.raises(ConfigError, match="1 to 256 images"):
        check_size(models.MLPConfig(), 257)
    with pytest.raises(ConfigError, match="batch of one image has no spread"):
        check_size(models.MLPConfig(batchnorm=True), 1)
    with pytest.raises(ConfigError, match="use a batch of at most"):
        check_size(models.CNNConfig(channels=(64, 64), kernel=3, fc=(16,)), 256)
    check_size(models.preset("mlp-seed000")["model"], 64)
    check_size(models.preset("cnn-seed003")["model"], 64)


def test_bad_optimizer_settings_are_sentences(ds):
    s = Stepper(MLP, ds.x_train, ds.y_train, batch_size=4)
    with pytest.raises(ConfigError, match="learning rate"):
        s.set_optimizer("sgd", 0.0)
    with pytest.raises(ConfigError, match="unknown optimizer"):
        s.set_optimizer("rmsprop", 0.1)
    with pytest.raises(ConfigError, match="labels must be class numbers"):
        Stepper(MLP, ds.x_train[:4], np.array([0, 1, 2, 10]), batch_size=4)
    assert s.lr == 0.1 and s.kind == "sgd"      # a refused change leaves the stepper as it was


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_backward_equals_torch(kind):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 7, 6, 4))             # odd height: the last row is dropped, as in torch
    x[0, :2, :2, 0] = 0.5                          # a tie: the first of the window wins, as in torch
    g = rng.normal(size=(3, 3, 3, 4))
    layer = Pool2d("pool", kind)
    out = layer.forward(x, train=True)
    dx = layer.backward(g)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_()
    ot = (F.max_pool2d if kind == "max" else F.avg_pool2d)(xt, 2)
    ot.backward(torch.from_numpy(g.transpose(0, 3, 1, 2).copy()))
    assert _worst(out, ot.detach().numpy().transpose(0, 2, 3, 1)) <= 1e-15
    assert _worst(dx, xt.grad.numpy().transpose(0, 2, 3, 1)) <= 1e-15
