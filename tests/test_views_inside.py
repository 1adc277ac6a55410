"""fmnist_core.views.inside: layer by layer, PyTorch and the NumPy twin agree within 1e-4 for
every layer kind (batchnorm, dropout, every pooling, odd activations) on a real test image; the
shared models are left exactly as they were; the pictures have the right shapes and colours."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from fmnist_core.models import CNNConfig, MLPConfig
from fmnist_core.views import inside as view
from fmnist_core.views.predict import predict_both
from fmnist_core.views.shared import load_pair, softmax

from conftest import random_checkpoint

CONFIGS = {
    "mlp-bn-gelu": MLPConfig(hidden=(64, 32), activation="gelu", batchnorm=True, dropout=0.2),
    "mlp-linear": MLPConfig(hidden=()),
    "cnn-bn-avg-leaky": CNNConfig(channels=(4, 8), kernel=5, pool="avg", fc=(16,), activation="leaky_relu",
                                  batchnorm=True, dropout=0.3),
    "cnn-max-tanh": CNNConfig(channels=(3, 5, 6), kernel=3, pool="max", pool_every=2, fc=(),
                              activation="tanh"),
}


def pair(tmp_path, cfg):
    return load_pair(random_checkpoint(tmp_path / "m.pt", cfg))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_layers_agree_within_1e_4_for_every_kind(tmp_path, ds, name):
    model, net = pair(tmp_path, CONFIGS[name])
    layers = view.layer_outputs(model, net, ds.x_test[0])
    assert [d["name"] for d in layers] == [s.name for s in model.plan]
    for d in layers:
        assert d["torch"].shape == d["manual"].shape == d["shape"], d["name"]
        assert d["max_abs_diff"] <= 1e-4 and d["agree"], (d["name"], d["max_abs_diff"])
    table = view.layer_diff_table(layers)
    assert list(table["same"].unique()) == ["yes"]
    # the last layer's output is the logits the Predict page's prediction came from
    r = predict_both(model, net, ds.x_test[0])
    assert r["agree"] and r["max_prob_diff"] < 1e-5
    np.testing.assert_allclose(softmax(layers[-1]["torch"]), r["torch"], atol=1e-6)


def test_the_shared_model_is_left_as_it_was(tmp_path, ds):
    model, net = pair(tmp_path, CONFIGS["cnn-bn-avg-leaky"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    predict_both(model, net, ds.x_test[1])
    view.layer_outputs(model, net, ds.x_test[1])
    view.first_layer(model)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not model.training
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_colours_and_grids():
    rgb = view.colorize(np.array([[-2.0, 0.0, 2.0]]))
    assert rgb.shape == (1, 3, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == tuple(view.NEGATIVE.astype(int))
    assert tuple(rgb[0, 1]) == (255, 255, 255)
    assert tuple(rgb[0, 2]) == tuple(view.POSITIVE.astype(int))
    gray = view.colorize(np.array([[0.0, 1.0]]))
    assert tuple(gray[0, 0]) == (0, 0, 0) and tuple(gray[0, 1]) == (255, 255, 255)
    maps = view.map_grid(np.random.default_rng(0).random((6, 14, 14)), target=84)
    assert maps.shape == (84, 6 * 84 + 5 * 4, 3)


def test_first_layer_pictures(tmp_path):
    model, _ = pair(tmp_path, MLPConfig(hidden=(40,)))
    first = view.first_layer(model, units=32)
    assert first["kind"] == "linear" and first["weights"].shape == (32, 28, 28) and first["total"] == 40
    assert view.weight_grid(first["weights"], cols=8, target=112).shape == (4 * 112 + 3 * 4, 8 * 112 + 7 * 4, 3)
    model, _ = pair(tmp_path, CONFIGS["cnn-bn-avg-leaky"])
    first = view.first_layer(model)
    assert first["kind"] == "conv" and first["weights"].shape == (4, 5, 5)
    model, _ = pair(tmp_path, CONFIGS["mlp-linear"])
    assert view.first_layer(model)["layer"] == "out"  # no hidden layer: the output weights


def test_parameter_shares_and_strip_ranges():
    s = view.parameter_summary(pd.DataFrame({"layer": ["a", "b", "c"], "parameters": [0, 300, 100]}))
    assert s == {"total": 400, "largest": "b", "share": 0.75}
    assert view.strip_range(np.array([-1.0, 3.0])) == {"zmin": -3.0, "zmax": 3.0, "signed": True}
    assert view.strip_range(np.zeros(4)) == {"zmin": 0.0, "zmax": 1.0, "signed": False}
