"""twin.infer's ManualNet against PyTorch, on the real Fashion-MNIST (float32).

* every shipped model on all 10,000 test images, every other preset (a few steps of training) on
  the first 2,000: identical labels, identical accuracy, max |logit difference| <= LOGIT_TOL
  (1e-4); every layer's output too (on 500 images);
* every layer kind (each activation, batchnorm, dropout, every pooling, odd kernels) with
  random weights: every layer's output and the fused fast path within 1e-5;
* inputs in every accepted form give the same logits; bad weights and inputs are explained.
"""
from pathlib import Path

import numpy as np
import pytest

from fmnist_core import models
from fmnist_core.data import PROJECT_ROOT
from fmnist_core.errors import CheckpointError, ImageError
from fmnist_core.evaluate import images_to_tensor
from fmnist_core.twin import ManualNet, state_dict_to_numpy
from twin_util import (LAYER_CONFIGS, LOGIT_TOL, PRESETS, assert_every_layer_matches, layer_config_id,
                       preset_checkpoint, random_model, torch_layers, torch_logits)  # noqa: F401


@pytest.mark.parametrize("name", PRESETS)
def test_preset_agrees_with_torch_on_all_test_images(name, ds, preset_checkpoint, record_property, capsys):
    path = preset_checkpoint(name)
    # the shipped models on the whole test set; a preset trained a few steps here on a fifth of it
    # (its weights barely past the initial ones: more images would test the same sums again)
    count = 10_000 if Path(path).parent == PROJECT_ROOT / "artifacts" / "models" else 2_000
    model = models.load_model(path)
    ref = torch_logits(model, ds.x_test[:count])
    net = ManualNet.from_checkpoint(path)
    mine = net.forward(ds.x_test[:count])  # uint8 in, scaled inside as evaluate does
    assert mine.shape == (count, 10) and mine.dtype == np.float32
    y = ds.y_test[:count]
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
        print(f"\n{name}: max |logit diff| {diff:.2e} over {count:,}; per layer (500 images): "
              + ", ".join(f"{n} {d:.1e}" for n, d in layers.items()))


@pytest.mark.parametrize("cfg", LAYER_CONFIGS, ids=layer_config_id)
def test_every_layer_kind_matches_torch(cfg, ds):
    model = random_model(cfg)
    x = ds.x_test[:64]
    assert_every_layer_matches(ManualNet(cfg, state_dict_to_numpy(model.state_dict())), model, x)
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
