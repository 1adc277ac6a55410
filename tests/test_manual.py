"""The manual twin against PyTorch, on the real Fashion-MNIST.

In the spirit of micrograd's test_engine.py: the same weights and inputs go through
the hand-written code and through torch, and outputs and gradients are compared
within stated tolerances:

* inference (float32): every preset on all 10,000 test images: identical labels,
  identical accuracy, max |logit difference| <= 1e-4; every layer's output too;
* gradients (float64): every parameter and every layer output, relative error <= 1e-5;
* optimizers: SGD / Adam / AdamW steps equal torch.optim's;
* from-scratch training learns well above chance and follows train.train's contract.
"""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import run_cli
from fmnist_core import models
from fmnist_core.data import PROJECT_ROOT
from fmnist_core.errors import CheckpointError, ConfigError, ImageError
from fmnist_core.evaluate import evaluate, images_to_tensor, predict_logits
from fmnist_core.twin import (Adam, ManualNet, NumpyMLP, SGD, SoftmaxCrossEntropy, TorchOpsNet, compare,
                              state_dict_to_numpy, train_numpy)
from fmnist_core.twin.layers import GELU, Dropout, erf
from fmnist_core.twin.optim import lr_schedule
from fmnist_core.train import TrainConfig, train

LOGIT_TOL = 1e-4   # the bar for float32 logits
GRAD_TOL = 1e-5    # the bar for float64 gradients (relative)


def rel_err(a, b, floor: float = 1e-10) -> float:
    """max |a - b| relative to max |b|. The floor handles gradients that are zero in exact
    arithmetic (a linear layer's bias right before batchnorm): both sides are then ~1e-18
    of rounding noise, and only an absolute comparison means anything."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), floor))


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


# --- trained checkpoints of every preset ----------------------------------------------

@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory, ds):
    """preset name -> checkpoint path: a shipped model when one exists, else a brief training."""
    cache: dict[str, str] = {}

    def get(name: str) -> str:
        if name in cache:
            return cache[name]
        # a shipped model that does not load is a failure here, never a reason to test another
        for path in sorted((PROJECT_ROOT / "artifacts" / "models").glob("*.pt")):
            ck = models.read_checkpoint(path)
            if (ck.get("metrics") or {}).get("preset") == name:
                models.load_model(path)  # still fits today's layer plan
                cache[name] = str(path)
                return cache[name]
        # a few steps: weights that are no longer the initial ones, in seconds even for 5 convs
        p = models.preset(name)
        cfg = TrainConfig(epochs=1, batch_size=64, val_fraction=0.0, device="cpu", precision="fp32", seed=0)
        res = train(p["model"], cfg, ds, train_limit=256 if p["model"].kind == "cnn" else 4096)
        path = tmp_path_factory.mktemp("ckpt") / f"{name}.pt"
        models.save_checkpoint(path, res.model, metrics={"preset": name})
        cache[name] = str(path)
        return cache[name]
    return get


# cnn-seed002 has ~22 M multiply-adds per image: 10,000 images take seconds even in torch
PRESETS = [pytest.param(n, marks=pytest.mark.slow) if n == "cnn-seed002" else n for n in models.preset_names()]


@pytest.mark.parametrize("name", PRESETS)
def test_preset_agrees_with_torch_on_all_test_images(name, ds, checkpoint, record_property, capsys):
    path = checkpoint(name)
    model = models.load_model(path)
    ref = torch_logits(model, ds.x_test)
    net = ManualNet.from_checkpoint(path)
    mine = net.forward(ds.x_test)  # uint8 in, scaled inside as evaluate does
    assert mine.shape == (10000, 10) and mine.dtype == np.float32
    y = ds.y_test
    assert np.array_equal(mine.argmax(1), ref.argmax(1))
    assert (mine.argmax(1) == y).mean() == (ref.argmax(1) == y).mean()
    diff = float(np.abs(mine - ref).max())
    assert diff <= LOGIT_TOL, diff

    # layer by layer (a slice: cnn-seed002's maps for 10,000 images would be 1 GB a layer)
    x = ds.x_test[:500]
    ours, theirs = net.forward_layers(x), torch_layers(model, x)
    assert [n for n, _ in ours] == [n for n, _ in theirs] == [s.name for s in models.layer_plan(model.config)]
    layers = {}
    for (n, a), (_, b) in zip(ours, theirs):
        assert a.shape == b.shape, n
        layers[n] = float(np.abs(a - b).max())
        assert layers[n] <= LOGIT_TOL * max(1.0, float(np.abs(b).max())), (n, layers[n])
    record_property("per_layer_max_abs_diff", layers)
    with capsys.disabled():
        print(f"\n{name}: max |logit diff| {diff:.2e} over 10,000; per layer (500 images): "
              + ", ".join(f"{n} {d:.1e}" for n, d in layers.items()))

    # the torch-ops twin: same math, torch tensor ops (CPU here; the GPU in the benchmark)
    tnet = TorchOpsNet(model.config, torch.load(path, weights_only=True)["state_dict"])
    x = ds.x_test if model.config.kind == "mlp" else ds.x_test[:500]  # CNN: keep the file fast
    tl = tnet.forward(torch.from_numpy(x.copy())).numpy()
    assert np.array_equal(tl.argmax(1), ref[:len(x)].argmax(1))
    assert float(np.abs(tl - ref[:len(x)]).max()) <= LOGIT_TOL
    for (n, a), (_, b) in zip(tnet.forward_layers(ds.x_test[:200]), torch_layers(model, ds.x_test[:200])):
        assert float(np.abs(a.numpy() - b).max()) <= LOGIT_TOL * max(1.0, float(np.abs(b).max())), n


# --- every layer kind, with random weights and batchnorm statistics --------------------

LAYER_CONFIGS = [models.MLPConfig(hidden=(48, 24), activation=a, batchnorm=bn, dropout=d)
                 for a, bn, d in [("relu", False, 0.0), ("tanh", True, 0.1), ("sigmoid", True, 0.0),
                                  ("leaky_relu", False, 0.3), ("gelu", True, 0.0)]]
LAYER_CONFIGS += [models.CNNConfig(channels=(4, 6, 5), kernel=k, pool=p, pool_every=1, max_pools=mp,
                                   fc=(20, 12), activation=a, batchnorm=bn, dropout=0.2)
                  for k, p, mp, a, bn in [(3, "max", 2, "relu", True), (5, "avg", 3, "gelu", False),
                                          (7, "max", 4, "leaky_relu", True), (1, "avg", 1, "tanh", False)]]


@pytest.mark.parametrize("cfg", LAYER_CONFIGS, ids=lambda c: f"{c.kind}-{c.activation}")
def test_every_layer_kind_matches_torch(cfg, ds):
    torch.manual_seed(1)
    model = models.build_model(cfg).eval()
    with torch.no_grad():  # batchnorm away from the identity, or it would test nothing
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    x = ds.x_test[:64]
    theirs = torch_layers(model, x)
    for net in (ManualNet(cfg, state_dict_to_numpy(model.state_dict())), TorchOpsNet(cfg, model.state_dict())):
        ours = net.forward_layers(x)
        assert [n for n, _ in ours] == [n for n, _ in theirs]
        for (n, a), (_, b) in zip(ours, theirs):
            a = a.numpy() if hasattr(a, "numpy") else a
            assert a.shape == b.shape and float(np.abs(a - b).max()) <= 1e-5, n
        logits = net.forward(x)
        logits = logits.numpy() if hasattr(logits, "numpy") else logits
        assert float(np.abs(logits - theirs[-1][1]).max()) <= 1e-5
    # float input in (N, 1, 28, 28) and (N, 784) gives the same as uint8
    mn = ManualNet(cfg, model.state_dict())
    xf = images_to_tensor(x).numpy()
    assert np.array_equal(mn.forward(xf), mn.forward(x))
    assert np.array_equal(mn.forward(xf.reshape(64, 784)), mn.forward(x))
    assert np.array_equal(mn.predict(x), mn.forward(x).argmax(1))


def test_bad_weights_and_inputs_are_explained():
    cfg = models.MLPConfig(hidden=(16,))
    sd = state_dict_to_numpy(models.build_model(cfg).state_dict())
    with pytest.raises(CheckpointError, match="fc1.weight"):
        ManualNet(cfg, {k: v for k, v in sd.items() if k != "fc1.weight"})
    with pytest.raises(CheckpointError, match="shape"):
        ManualNet(models.MLPConfig(hidden=(17,)), sd)
    with pytest.raises(ImageError, match="28, 28"):
        ManualNet(cfg, sd).forward(np.zeros((2, 27, 27), np.float32))


def test_erf_is_accurate():
    x = np.linspace(-6, 6, 200001)
    ref = np.array([math.erf(v) for v in x])
    assert np.abs(erf(x) - ref).max() < 1e-7


# --- gradients: NumPy backward vs torch.autograd, float64 ------------------------------

@pytest.mark.parametrize("act", models.ACTIVATIONS)
@pytest.mark.parametrize("batchnorm", [False, True])
def test_gradients_match_autograd(act, batchnorm, ds):
    cfg = models.MLPConfig(hidden=(40, 24), activation=act, batchnorm=batchnorm)
    net = NumpyMLP(cfg, np.random.default_rng(3), dtype=np.float64)
    model = models.build_model(cfg).double().train()
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in net.state_dict().items()})
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


def test_training_steps_match_torch_with_l1_and_l2(ds):
    """Three whole steps (forward, loss + L1, backward, Adam with L2) in float64, both ways."""
    cfg = models.MLPConfig(hidden=(32,))
    net = NumpyMLP(cfg, np.random.default_rng(0), dtype=np.float64)
    model = models.build_model(cfg).double().train()
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in net.state_dict().items()})
    opt_t = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-3)
    opt, loss_fn, l1 = Adam(1e-2, 1e-3), SoftmaxCrossEntropy(), 1e-4
    plist = net.parameters()
    for i in range(3):
        x = ds.x_train[i * 64:(i + 1) * 64].astype(np.float64) / 255
        y = ds.y_train[i * 64:(i + 1) * 64].astype(np.int64)
        loss_fn.forward(net.forward(x, train=True), y)
        net.backward(loss_fn.backward())
        for _, layer, k in plist:
            if layer.params[k].ndim > 1:
                layer.grads[k] = layer.grads[k] + l1 * np.sign(layer.params[k])
        opt.step([layer.params[k] for _, layer, k in plist], [layer.grads[k] for _, layer, k in plist])
        loss_t = F.cross_entropy(model(torch.from_numpy(x).reshape(-1, 1, 28, 28)), torch.from_numpy(y))
        loss_t = loss_t + l1 * sum(p.abs().sum() for p in model.parameters() if p.dim() > 1)
        opt_t.zero_grad()
        loss_t.backward()
        opt_t.step()
    sd = model.state_dict()
    for k, v in net.state_dict().items():
        assert rel_err(v, sd[k]) <= 1e-10, k


# --- from-scratch training: the trainer's contract -------------------------------------

def test_numpy_training_learns_and_keeps_the_trainer_contract(ds):
    events, best = [], []
    cfg = TrainConfig(epochs=2, batch_size=64, seed=0)
    res = train_numpy(models.preset("mlp-seed000")["model"], cfg, ds, callback=events.append,
                      on_best=lambda sd, row: best.append((sd, row)), train_limit=12000)
    assert res.status == "finished" and res.epochs_run == 2 and res.device == "cpu"
    assert isinstance(res.model, models.FashionNet) and not res.model.training
    acc = evaluate(res.model, ds.x_test, ds.y_test)["accuracy"]
    assert acc > 0.80, acc  # chance is 0.10
    assert best and isinstance(best[0][0]["fc1.weight"], torch.Tensor)

    # the same events and history keys as the torch trainer
    t_events = []
    t_res = train(models.preset("mlp-seed000")["model"], TrainConfig(epochs=1, device="cpu", progress_every=2),
                  ds, callback=t_events.append, train_limit=500)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("epoch") == 2 and "batch" in kinds
    for kind in ("start", "batch", "epoch", "end"):
        assert set(next(e for e in events if e["event"] == kind)) == \
            set(next(e for e in t_events if e["event"] == kind)), kind
    assert set(res.history[0]) == set(t_res.history[0])


def test_numpy_training_with_every_option(ds):
    """batchnorm + dropout + GELU, AdamW + cosine, L1 + L2, label smoothing, flips and shifts."""
    mcfg = models.MLPConfig(hidden=(64, 32), activation="gelu", batchnorm=True, dropout=0.2)
    cfg = TrainConfig(epochs=2, batch_size=100, optimizer="adamw", lr=3e-3, weight_decay=1e-3, l1=1e-6,
                      schedule="cosine", label_smoothing=0.05, augment_flip=True, augment_shift=1,
                      val_fraction=0.05)
    res = train_numpy(mcfg, cfg, ds, train_limit=3000)
    assert res.status == "finished" and res.history[-1]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert res.history[0]["lr"] == pytest.approx(3e-3 * 0.5 * (1 + math.cos(math.pi / 2)))
    logits = predict_logits(res.model, ds.x_test[:2000]).numpy()
    assert (logits.argmax(1) == ds.y_test[:2000]).mean() > 0.6
    # the trained batchnorm statistics made it into the torch model, which the twin reproduces
    assert res.model.bn1.num_batches_tracked.item() == 2 * 30
    mine = ManualNet(mcfg, state_dict_to_numpy(res.model.state_dict())).forward(ds.x_test[:2000])
    assert float(np.abs(mine - logits).max()) <= LOGIT_TOL


def test_numpy_training_cancel_diverge_and_early_stop(ds):
    mlp = models.preset("mlp-seed000")["model"]
    calls = []
    res = train_numpy(mlp, TrainConfig(epochs=3), ds, should_stop=lambda: calls.append(1) or len(calls) >= 2,
                      train_limit=5000)
    assert res.status == "cancelled" and res.epochs_run == 0 and "cancelled" in res.message
    res = train_numpy(models.MLPConfig(hidden=(256, 256)),
                      TrainConfig(epochs=3, optimizer="sgd", lr=10.0, momentum=0.99), ds, train_limit=3000)
    assert res.status == "diverged" and "NaN" in res.message and "smaller learning rate" in res.message
    res = train_numpy(mlp, TrainConfig(epochs=20, batch_size=256, optimizer="sgd", lr=1e-9, momentum=0.0,
                                       patience=2), ds, train_limit=1000)
    assert res.status == "finished" and res.epochs_run == 3 and res.best_epoch == 1
    assert "early stop" in res.message


def test_numpy_engine_refuses_what_it_does_not_do(ds):
    with pytest.raises(ConfigError, match="MLPs only"):
        train_numpy(models.preset("cnn-seed003")["model"], TrainConfig(), ds)
    with pytest.raises(ConfigError, match="CPU only"):
        train_numpy(models.MLPConfig(), TrainConfig(device="cuda"), ds)


# --- compare and the CLI ---------------------------------------------------------------

def test_compare_torch_ops(ds, checkpoint):
    r = compare(checkpoint("mlp-seed001"), ds.x_test, ds.y_test, impl="torch-ops")
    assert r["n"] == 10000 and r["agreement"] == 1.0 and r["impl"] == "torch-ops"
    assert r["accuracy_manual"] == r["accuracy_torch"] and r["max_abs_diff"] <= LOGIT_TOL
    with pytest.raises(ConfigError, match="impl"):
        compare(checkpoint("mlp-seed001"), ds.x_test, ds.y_test, impl="cuda-magic")


def test_cli_train_numpy_then_compare(tmp_path, ds):
    run_dir = tmp_path / "run"
    p = run_cli("train", "--engine", "numpy", "--preset", "mlp-seed000", "--epochs", "1",
                "--train-limit", "4000", "--run-dir", run_dir)
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert summary["status"] == "finished" and summary["test_accuracy"] > 0.75
    ckpt = models.read_checkpoint(summary["checkpoint"])  # the same run format as the torch engine
    assert ckpt["metrics"]["engine"] == "numpy" and (run_dir / "metrics.json").is_file()

    p = run_cli("compare", summary["checkpoint"])
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert {"n", "agreement", "accuracy_torch", "accuracy_manual", "max_abs_diff", "layers"} <= set(r)
    assert r["n"] == 10000 and r["agreement"] == 1.0 and r["accuracy_manual"] == r["accuracy_torch"]
    assert abs(r["accuracy_torch"] - summary["test_accuracy"]) < 1e-9
    assert r["max_abs_diff"] <= LOGIT_TOL
    assert [entry["name"] for entry in r["layers"]] == ["norm", "flatten", "fc1", "act1", "out"]
    assert all(entry["max_abs_diff"] <= LOGIT_TOL for entry in r["layers"])



def test_cli_compare_errors_are_one_line(tmp_path, capsys):
    from fmnist_core.cli import main
    assert main(["compare", str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: checkpoint not found") and err.count("\n") == 1
    assert main(["compare", str(tmp_path / "missing.pt"), "--device", "cuda"]) == 2
    assert "torch-ops" in capsys.readouterr().err
