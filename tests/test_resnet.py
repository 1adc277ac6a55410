"""The residual CNN (models.ResNetConfig, kind "resnet"): its layer plan and state_dict keys,
parameter count, config round trip and validation, and the NumPy twin's hand-written
backward against torch.autograd (float64), on the real Fashion-MNIST.

The twin's inference of ResNets (every layer against torch, the shipped resnet.pt on all
10,000 test images) is in test_twin_infer.py / test_twin_torch_ops.py, whose LAYER_CONFIGS
and PRESETS include ResNets.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fmnist_core import models
from fmnist_core.device import resolve_precision
from fmnist_core.errors import ConfigError
from fmnist_core.train import TrainConfig
from fmnist_core.twin import ManualNet, check_trainable, train_numpy
from fmnist_core.twin.layers import NumpyMLP, SoftmaxCrossEntropy
from twin_util import GRAD_TOL, rel_err

CONFIGS = [models.ResNetConfig(stem=4, stages=(4, 6, 8), blocks=2),
           models.ResNetConfig(stem=6, stages=(6,), activation="gelu", dropout=0.2),
           models.ResNetConfig(stem=3, stages=(5, 7, 9, 11))]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(map(str, c.stages)))
def test_plan_parameters_and_keys(cfg, tmp_path):
    model = models.build_model(cfg)
    assert models.plan_parameters(cfg) == models.count_parameters(model)
    kinds = [s.kind for s in model.plan]
    assert kinds[:4] == ["normalize", "conv", "batchnorm2d", "act"] and kinds[-1] == "linear"
    assert kinds.count("resblock") == len(cfg.stages) * cfg.blocks and "gap" in kinds
    keys = set(model.state_dict())
    # a shortcut conv exactly where the block changes channels or halves the map
    for s in model.plan:
        if s.kind == "resblock":
            shortcut = s.args["stride"] == 2 or s.args["in"] != s.args["out"]
            assert (f"{s.name}.short_conv.weight" in keys) == shortcut, s.name
            assert {f"{s.name}.conv1.weight", f"{s.name}.bn2.running_var"} <= keys
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    # round trip through a checkpoint: same config, same weights, same outputs
    path = models.save_checkpoint(tmp_path / "r.pt", model.eval())
    back = models.load_model(path)
    assert back.config == cfg and models.config_from_dict(models.config_to_dict(cfg)) == cfg
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(back(x), model(x))


def test_bad_resnet_configs_are_explained():
    with pytest.raises(ConfigError, match="stages"):
        models.validate_config(models.ResNetConfig(stages=()))
    with pytest.raises(ConfigError, match="blocks"):
        models.validate_config(models.ResNetConfig(blocks=0))
    with pytest.raises(ConfigError, match="unknown resnet config keys: channels"):
        models.config_from_dict({"kind": "resnet", "channels": [8]})
    with pytest.raises(ConfigError, match="widths"):
        models.validate_config(models.ResNetConfig(stem=0))


def test_auto_precision_treats_a_resnet_like_a_cnn():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu, "resnet") == resolve_precision("auto", cpu, "cnn")
    assert resolve_precision("auto", cpu, "mlp") == "fp32"


@pytest.mark.parametrize("cfg", CONFIGS[:2], ids=["relu-2blocks", "gelu-dropout"])
def test_twin_backward_matches_autograd(cfg, ds):
    """A training step's loss, every parameter's gradient, the input gradient and the
    batchnorms' running statistics, twin (float64) against torch.autograd."""
    net = NumpyMLP(cfg, np.random.default_rng(3), dtype=np.float64)
    model = models.build_model(cfg).double().train()
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in net.state_dict().items()})
    if cfg.dropout:  # the same mask both ways: dropout's own test is in test_twin_layers
        net.layers = [layer for layer in net.layers if layer.name != "drop"]
        model.drop.p = 0.0
    x = ds.x_train[:24].astype(np.float64) / 255.0
    y = ds.y_train[:24].astype(np.int64)
    loss_fn = SoftmaxCrossEntropy(0.1)
    loss = loss_fn.forward(net.forward(x, train=True), y)
    dx = net.backward(loss_fn.backward(), input_grad=True)
    xt = torch.from_numpy(x[:, None].copy()).requires_grad_(True)
    loss_t = F.cross_entropy(model(xt), torch.from_numpy(y), label_smoothing=0.1)
    loss_t.backward()
    assert abs(loss - loss_t.item()) <= 1e-8 * loss_t.item()
    grads = dict(model.named_parameters())
    assert {name for name, _, _ in net.parameters()} == set(grads)
    # relative to the largest gradient: the stem's bias feeds a batchnorm, its gradient is 0
    # in exact arithmetic and only rounding noise either way
    top = max(float(p.grad.abs().max()) for p in grads.values())
    for name, layer, k in net.parameters():
        assert np.abs(layer.grads[k] - grads[name].grad.numpy()).max() <= GRAD_TOL * top, name
    assert rel_err(dx, xt.grad[:, 0]) <= GRAD_TOL
    sd, ref = net.state_dict(), model.state_dict()
    for k in ref:
        if "running" in k:
            assert rel_err(sd[k], ref[k]) <= GRAD_TOL, k  # GELU: an erf approximation (< 1.2e-7)


def test_twin_trains_a_resnet(ds):
    cfg = models.ResNetConfig(stem=4, stages=(4, 8), blocks=1)
    tc = TrainConfig(epochs=1, batch_size=64, lr=3e-3, val_fraction=0.1, seed=0, augment_flip=True)
    check_trainable(cfg, tc)  # no complaint
    res = train_numpy(cfg, tc, ds, train_limit=640)
    assert res.status == "finished" and res.epochs_run == 1 and np.isfinite(res.history[0]["train_loss"])
    # what comes back is a torch model holding the learned weights, and the twin runs them alike
    fresh = models.build_model(cfg).state_dict()
    assert not torch.equal(res.model.state_dict()["res1_1.conv1.weight"], fresh["res1_1.conv1.weight"])
    x = ds.x_test[:32]
    with torch.no_grad():
        ref = res.model(torch.from_numpy(x[:, None] / np.float32(255.0))).numpy()
    assert np.abs(ManualNet(cfg, res.model.state_dict()).forward(x) - ref).max() <= 1e-4


def test_cli_trains_a_custom_resnet(store):
    import json

    from conftest import run_cli
    p = run_cli("train", "--arch", "resnet", "--stem", "4", "--stages", "4,8", "--blocks", "1",
                "--epochs", "1", "--train-limit", "512", "--val-fraction", "0")
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert summary["status"] == "finished"
    ck = models.read_checkpoint(summary["checkpoint"])
    assert ck["model_config"]["kind"] == "resnet" and ck["model_config"]["stages"] == [4, 8]
    p = run_cli("train", "--arch", "resnet", "--hidden", "64")
    assert p.returncode == 2 and p.stderr.startswith("error: a ResNet takes --stem")


def test_inside_page_views_show_a_resnet_layer_by_layer(ds):
    from fmnist_core.views import inside
    from twin_util import random_model
    cfg = models.ResNetConfig(stem=4, stages=(4, 8), blocks=1)
    model = random_model(cfg)
    layers = inside.layer_outputs(model, ManualNet(cfg, model.state_dict()), ds.x_test[0])
    assert [d["name"] for d in layers] == [s.name for s in model.plan]
    assert all(d["agree"] for d in layers), [(d["name"], d["max_abs_diff"]) for d in layers]
    shapes = {d["name"]: d["shape"] for d in layers}
    assert shapes["res1_1"] == (4, 28, 28) and shapes["res2_1"] == (8, 14, 14) and shapes["gap"] == (8,)
    first = inside.first_layer(model)
    assert first["layer"] == "stem" and first["weights"].shape == (4, 3, 3)
