"""fmnist_core.inspect_net: what the Predict and Inside pages show, tested without a browser.

Layer by layer, PyTorch and the NumPy twin agree within 1e-4 for every layer kind (batchnorm,
dropout, every pooling, odd activations) on a real test image; the shared models are left
exactly as they were; the pictures have the right shapes and colours; the model picker lists
only finished runs.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fmnist_core import inspect_net as ins
from fmnist_core.models import CNNConfig, MLPConfig, build_model, save_checkpoint

CONFIGS = {
    "mlp-bn-gelu": MLPConfig(hidden=(64, 32), activation="gelu", batchnorm=True, dropout=0.2),
    "mlp-linear": MLPConfig(hidden=()),
    "cnn-bn-avg-leaky": CNNConfig(channels=(4, 8), kernel=5, pool="avg", fc=(16,), activation="leaky_relu",
                                  batchnorm=True, dropout=0.3),
    "cnn-max-tanh": CNNConfig(channels=(3, 5, 6), kernel=3, pool="max", pool_every=2, fc=(),
                              activation="tanh"),
}


def checkpoint(tmp_path, cfg, seed=0):
    torch.manual_seed(seed)
    model = build_model(cfg)
    for m in model.modules():  # batchnorm with real-looking statistics, not the 0/1 defaults
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    return save_checkpoint(tmp_path / "m.pt", model, metrics={"test_accuracy": 0.5})


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_layers_agree_within_1e_4_for_every_kind(tmp_path, ds, name):
    model, net = ins.load_pair(checkpoint(tmp_path, CONFIGS[name]))
    layers = ins.layer_outputs(model, net, ds.x_test[0])
    assert [d["name"] for d in layers] == [s.name for s in model.plan]
    for d in layers:
        assert d["torch"].shape == d["manual"].shape == d["shape"], d["name"]
        assert d["max_abs_diff"] <= 1e-4 and d["agree"], (d["name"], d["max_abs_diff"])
    table = ins.layer_diff_table(layers)
    assert list(table["same"].unique()) == ["yes"]
    r = ins.predict_both(model, net, ds.x_test[0])
    assert r["agree"] and r["max_prob_diff"] < 1e-5
    assert r["torch"].sum() == pytest.approx(1.0, abs=1e-5) and r["manual"].sum() == pytest.approx(1.0, abs=1e-5)
    assert r["label"] == r["manual_label"]
    # the last layer's output is the logits the prediction came from
    np.testing.assert_allclose(ins.softmax(layers[-1]["torch"]), r["torch"], atol=1e-6)


def test_the_shared_model_is_left_as_it_was(tmp_path, ds):
    model, net = ins.load_pair(checkpoint(tmp_path, CONFIGS["cnn-bn-avg-leaky"]))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ins.predict_both(model, net, ds.x_test[1])
    ins.layer_outputs(model, net, ds.x_test[1])
    ins.first_layer(model)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not model.training
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_inputs_are_checked_and_copied(ds):
    x = ds.x_test[0]
    f = ins.as_input(x)
    assert f.dtype == np.float32 and f.max() <= 1.0 and f is not x
    with pytest.raises(ValueError, match="28x28"):
        ins.as_input(np.zeros((3, 28, 28)))


def test_colours_and_grids():
    rgb = ins.colorize(np.array([[-2.0, 0.0, 2.0]]))
    assert rgb.shape == (1, 3, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == tuple(ins.NEGATIVE.astype(int))
    assert tuple(rgb[0, 1]) == (255, 255, 255)
    assert tuple(rgb[0, 2]) == tuple(ins.POSITIVE.astype(int))
    gray = ins.colorize(np.array([[0.0, 1.0]]))
    assert tuple(gray[0, 0]) == (0, 0, 0) and tuple(gray[0, 1]) == (255, 255, 255)
    grid = ins.tile_grid(np.zeros((10, 4, 4, 3), np.uint8), cols=4, factor=3, gap=2)
    assert grid.shape == (3 * 12 + 2 * 2, 4 * 12 + 3 * 2, 3)
    maps = ins.map_grid(np.random.default_rng(0).random((6, 14, 14)), target=84)
    assert maps.shape == (84, 6 * 84 + 5 * 4, 3)


def test_first_layer_pictures(tmp_path):
    model, _ = ins.load_pair(checkpoint(tmp_path, MLPConfig(hidden=(40,))))
    first = ins.first_layer(model, units=32)
    assert first["kind"] == "linear" and first["weights"].shape == (32, 28, 28) and first["total"] == 40
    assert ins.weight_grid(first["weights"], cols=8, target=112).shape == (4 * 112 + 3 * 4, 8 * 112 + 7 * 4, 3)
    model, _ = ins.load_pair(checkpoint(tmp_path, CONFIGS["cnn-bn-avg-leaky"]))
    first = ins.first_layer(model)
    assert first["kind"] == "conv" and first["weights"].shape == (4, 5, 5)
    model, _ = ins.load_pair(checkpoint(tmp_path, CONFIGS["mlp-linear"]))
    assert ins.first_layer(model)["layer"] == "out"  # no hidden layer: the output weights


def test_model_choices_list_shipped_models_and_finished_runs_only():
    cfg = {"kind": "mlp", "hidden": [8]}
    shipped = [{"name": "mlp", "path": "/m/mlp.pt", "available": True, "metrics": {"test_accuracy": 0.9},
                "model_config": cfg},
               {"name": "cnn", "path": "/m/cnn.pt", "available": False, "metrics": {}, "model_config": None}]
    runs = [{"run_id": r, "status": st, "checkpoint": ck, "config": {"model_config": cfg, "created": 0},
             "status_info": {}} for r, st, ck in (("a", "finished", "/r/a/best.pt"),
                                                  ("b", "running", "/r/b/best.pt"),
                                                  ("c", "finished", None), ("d", "cancelled", "/r/d/best.pt"))]
    choices = ins.model_choices(shipped, runs)
    assert list(choices) == ["shipped:mlp", "run:a"]
    assert "test 90.0%" in choices["shipped:mlp"]["label"]
    assert ins.default_choice(choices) == "shipped:mlp"
    assert ins.default_choice({}) is None


def test_small_helpers_of_the_pages():
    r = {"torch": np.array([0.7, 0.3] + [0.0] * 8, np.float32),
         "manual": np.array([0.7, 0.3 + 1e-7] + [0.0] * 8, np.float32)}
    t = ins.probability_table(r)
    assert list(t.columns) == ["class", "PyTorch", "NumPy twin", "|difference|"] and len(t) == 10
    assert t["|difference|"].max() == pytest.approx(1e-7, rel=0.2)
    y = np.array([0, 1, 1, 2, 1])
    assert {ins.random_test_index(y, 1, np.random.default_rng(s)) for s in range(20)} == {1, 2, 4}
    import pandas as pd
    s = ins.parameter_summary(pd.DataFrame({"layer": ["a", "b", "c"], "parameters": [0, 300, 100]}))
    assert s == {"total": 400, "largest": "b", "share": 0.75}
    assert ins.strip_range(np.array([-1.0, 3.0])) == {"zmin": -3.0, "zmax": 3.0, "signed": True}
    assert ins.strip_range(np.zeros(4)) == {"zmin": 0.0, "zmax": 1.0, "signed": False}
