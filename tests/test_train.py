import numpy as np
import pytest
import torch

from fmnist_core import models
from fmnist_core.errors import ConfigError
from fmnist_core.evaluate import evaluate
from fmnist_core.train import TrainConfig, train


def _mlp():
    return models.preset("mlp-seed000")["model"]


def test_short_training_learns_well_above_chance(ds):
    events = []
    res = train(_mlp(), TrainConfig(epochs=2, batch_size=64, device="cpu"), ds,
                callback=events.append, train_limit=12000)
    assert res.status == "finished" and res.epochs_run == 2
    m = evaluate(res.model, ds.x_test, ds.y_test)
    assert m["accuracy"] > 0.78, m["accuracy"]  # chance is 0.10
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("epoch") == 2 and "batch" in kinds
    assert {"train_loss", "val_loss", "val_accuracy", "lr", "epoch_seconds"} <= set(res.history[0])
    assert sum(sum(r) for r in m["confusion_matrix"]) == 10000
    assert len(m["per_class"]) == 10 and m["per_class"][1]["class"] == "Trouser"


def test_seed_makes_runs_reproducible(ds):
    cfg = TrainConfig(epochs=1, batch_size=128, device="cpu", augment_flip=True, augment_shift=2)
    a = train(_mlp(), cfg, ds, train_limit=3000)
    b = train(_mlp(), cfg, ds, train_limit=3000)
    assert a.history[0]["train_loss"] == b.history[0]["train_loss"]
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k])


def test_early_stopping_restores_best(ds):
    # a learning rate this small cannot raise validation accuracy: patience runs out
    cfg = TrainConfig(epochs=20, batch_size=256, optimizer="sgd", lr=1e-9, momentum=0.0,
                      patience=2, device="cpu")
    res = train(_mlp(), cfg, ds, train_limit=2000)
    assert res.status == "finished" and res.epochs_run == 3 and res.best_epoch == 1
    assert "early stop" in res.message


def test_nan_loss_marks_run_diverged(ds):
    cfg = TrainConfig(epochs=3, batch_size=64, optimizer="sgd", lr=10.0, momentum=0.99, device="cpu")
    res = train(models.MLPConfig(hidden=(256, 256)), cfg, ds, train_limit=6000)
    assert res.status == "diverged"
    assert "NaN" in res.message and "smaller learning rate" in res.message


def test_cancel_stops_the_run(ds):
    calls = []
    res = train(_mlp(), TrainConfig(epochs=5, device="cpu"), ds,
                should_stop=lambda: calls.append(1) or len(calls) >= 3, train_limit=20000)
    assert res.status == "cancelled" and res.epochs_run == 0 and "cancelled" in res.message


def test_cnn_with_every_option_trains(ds):
    cfg = TrainConfig(epochs=1, batch_size=128, optimizer="adamw", lr=2e-3, schedule="onecycle",
                      weight_decay=1e-4, l1=1e-6, augment_flip=True, augment_shift=1,
                      label_smoothing=0.05, device="cpu")
    res = train(models.CNNConfig(channels=(8, 16), fc=(32,), batchnorm=True, dropout=0.1), cfg, ds,
                train_limit=4000)
    assert res.status == "finished" and res.history[0]["val_accuracy"] > 0.5


def test_augmentation_shifts_within_bounds():
    from fmnist_core.train import _augment
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 10:18, 10:18] = 1.0
    out = _augment(x, TrainConfig(augment_shift=2), torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert torch.allclose(out.sum((1, 2, 3)), x.sum((1, 2, 3)))  # a 2px shift keeps the square inside
    assert not torch.equal(out, x)


@pytest.mark.parametrize("bad", [dict(lr=-1), dict(epochs=0), dict(batch_size=0), dict(optimizer="rmsprop"),
                                 dict(val_fraction=0.9), dict(patience=2, val_fraction=0.0),
                                 dict(early_stop_on="test_accuracy")])
def test_impossible_values_are_refused(bad):
    with pytest.raises(ConfigError):
        TrainConfig(**bad).validate()
