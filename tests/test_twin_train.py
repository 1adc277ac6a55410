"""twin.train's train_numpy on the real Fashion-MNIST: whole training steps equal torch's
(float64, relative error <= 1e-10), from-scratch training learns well above chance, and the
trainer keeps train.train's contract (events, history, statuses, messages, on_best)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fmnist_core import models
from fmnist_core.errors import ConfigError
from fmnist_core.evaluate import evaluate, predict_logits
from fmnist_core.train import TrainConfig, train
from fmnist_core.twin import Adam, ManualNet, NumpyMLP, SoftmaxCrossEntropy, state_dict_to_numpy, train_numpy
from twin_util import LOGIT_TOL, rel_err


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
    with pytest.raises(ConfigError, match="MLPs and ResNets only"):
        train_numpy(models.preset("cnn-seed003")["model"], TrainConfig(), ds)
    with pytest.raises(ConfigError, match="CPU only"):
        train_numpy(models.MLPConfig(), TrainConfig(device="cuda"), ds)
