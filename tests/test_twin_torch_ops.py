"""twin.torch_ops' TorchOpsNet (the twin's math with torch tensor ops) against PyTorch's
nn.Module, on the CPU here (the GPU in the benchmark), on the real Fashion-MNIST:

* every preset: identical labels and max |logit difference| <= LOGIT_TOL (1e-4) on all
  10,000 test images (500 for CNNs, to keep the file fast); every layer on 200;
* every layer kind with random weights: every layer's output and the logits within 1e-5.
"""
import numpy as np
import pytest
import torch

from fmnist_core import models
from fmnist_core.twin import TorchOpsNet
from twin_util import (LAYER_CONFIGS, LOGIT_TOL, PRESETS, assert_every_layer_matches, layer_config_id,
                       preset_checkpoint, random_model, torch_layers, torch_logits)  # noqa: F401


@pytest.mark.parametrize("name", PRESETS)
def test_preset_agrees_with_torch(name, ds, preset_checkpoint):
    path = preset_checkpoint(name)
    model = models.load_model(path)
    tnet = TorchOpsNet(model.config, torch.load(path, weights_only=True)["state_dict"])
    x = ds.x_test if model.config.kind == "mlp" else ds.x_test[:500]  # CNN: keep the file fast
    ref = torch_logits(model, x)
    tl = tnet.forward(torch.from_numpy(x.copy())).numpy()
    assert np.array_equal(tl.argmax(1), ref[:len(x)].argmax(1))
    assert float(np.abs(tl - ref[:len(x)]).max()) <= LOGIT_TOL
    for (n, a), (_, b) in zip(tnet.forward_layers(ds.x_test[:200]), torch_layers(model, ds.x_test[:200])):
        assert float(np.abs(a.numpy() - b).max()) <= LOGIT_TOL * max(1.0, float(np.abs(b).max())), n


@pytest.mark.parametrize("cfg", LAYER_CONFIGS, ids=layer_config_id)
def test_every_layer_kind_matches_torch(cfg, ds):
    model = random_model(cfg)
    assert_every_layer_matches(TorchOpsNet(cfg, model.state_dict()), model, ds.x_test[:64])
