"""Backbones: the pretrained weights read with weights_only, the key map onto timm, timm's
outputs against the architecture the weights were made for, the control, checkpoint stacks."""
import pickle

import numpy as np
import pytest
import torch

from fmnist_core import backbones
from fmnist_core.errors import WorkbenchError


def test_weights_read_only_as_tensors(monkeypatch):
    seen = []
    real = torch.load

    def spy(*a, **kw):
        seen.append(kw.get("weights_only"))
        return real(*a, **kw)
    monkeypatch.setattr(torch, "load", spy)
    sd = backbones.read_pretrained()
    assert seen == [True]
    assert all(isinstance(v, torch.Tensor) for v in sd.values())
    # 4.65 M trainable numbers (the 4.69 M counts the batchnorm statistics too)
    n = sum(v.numel() for k, v in sd.items() if "running" not in k and "num_batches" not in k)
    assert 4_600_000 < n < 4_700_000


def test_key_map_covers_timm_exactly():
    import timm
    mapped = backbones.timm_state_dict(backbones.read_pretrained())
    want = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    assert set(mapped) == set(want)
    assert all(mapped[k].shape == want[k].shape for k in want)
    assert mapped["blocks.6.0.conv_pwl.weight"].shape == (320, 1152, 1, 1)  # package block 15
    with pytest.raises(WorkbenchError, match="unexpected key"):
        backbones.timm_state_dict({"_blocks.99._bn0.weight": torch.zeros(1)})


def test_timm_outputs_equal_the_packages_architecture(ds):
    from efficientnet_lite_pytorch import EfficientNet
    ref = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(backbones.weights_file()),
                                       image_size=64).eval()
    net = backbones.build(backbones.PRETRAINED, 64)
    x = torch.from_numpy(ds.x_test[:8].astype(np.float32) / 255).unsqueeze(1)
    with torch.no_grad():
        xx = torch.nn.functional.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)
        xx = (xx.expand(-1, 3, -1, -1) - net.mean) / net.std
        got, want = net.net(xx), ref(xx)          # ImageNet logits, (8, 1000)
        feats = net(x)
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
    assert feats.shape == (8, 1280)
    # the control is the same architecture, seeded: reproducible, and not the pretrained one
    c1, c2 = backbones.build(backbones.CONTROL, 64), backbones.build(backbones.CONTROL, 64)
    with torch.no_grad():
        a, b = c1(x), c2(x)
    assert torch.equal(a, b) and not torch.allclose(a, feats)


def test_checkpoint_conv_stack_and_bad_choices():
    net = backbones.build(backbones.CHECKPOINT, 28, checkpoint="artifacts/models/cnn.pt")
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, backbones.width(backbones.CHECKPOINT, 28, "flatten",
                                                                        "artifacts/models/cnn.pt"))
    for args in [("resnet50", 64, "pooled"), (backbones.PRETRAINED, 65, "pooled"), (backbones.PRETRAINED, 64, "stage9")]:
        with pytest.raises(WorkbenchError):
            backbones.check(*args)
    with pytest.raises(WorkbenchError, match="no inner layer"):
        backbones.check(backbones.CHECKPOINT, 28, "out", "artifacts/models/cnn.pt")
