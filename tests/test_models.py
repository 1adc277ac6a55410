import pytest
import torch

from fmnist_core import models
from fmnist_core.errors import CheckpointError, ConfigError


@pytest.mark.parametrize("name", models.preset_names())
def test_presets_map_images_to_ten_logits(name):
    m = models.build_model(models.preset(name)["model"]).eval()
    out = m(torch.rand(3, 1, 28, 28))
    assert out.shape == (3, 10) and out.dtype == torch.float32


def test_seed000_has_101770_parameters():
    m = models.build_model(models.preset("mlp-seed000")["model"])
    assert models.count_parameters(m) == 101_770
    table = models.parameter_table(m)
    assert [r["name"] for r in table] == ["fc1.weight", "fc1.bias", "out.weight", "out.bias"]
    assert [r["count"] for r in table] == [100352, 128, 1280, 10]


def test_seed001_layers():
    m = models.build_model(models.preset("mlp-seed001")["model"])
    assert [r["shape"] for r in models.parameter_table(m) if r["name"].endswith("weight")] == \
        [[128, 784], [64, 128], [10, 64]]


def test_lenet_preset_is_two_conv_avgpool_three_fc():
    plan = models.layer_plan(models.preset("cnn-seed003")["model"])
    kinds = [s.kind for s in plan]
    assert kinds.count("conv") == 2 and kinds.count("linear") == 3
    assert all(s.args["type"] == "avg" for s in plan if s.kind == "pool")
    assert all(s.args["kernel"] == 5 for s in plan if s.kind == "conv")


def test_seed002_has_five_convs_and_dropout():
    kinds = [s.kind for s in models.layer_plan(models.preset("cnn-seed002")["model"])]
    assert kinds.count("conv") == 5 and "dropout" in kinds and "pool" in kinds


def test_checkpoint_round_trip_weights_only(tmp_path):
    cfg = models.CNNConfig(channels=(4, 8), fc=(16,), batchnorm=True, dropout=0.1)
    m = models.build_model(cfg).eval()
    x = torch.rand(5, 1, 28, 28)
    path = models.save_checkpoint(tmp_path / "m.pt", m, metrics={"test_accuracy": 0.5})
    raw = torch.load(path, weights_only=True)  # nothing but plain types and tensors
    assert set(raw) == {"model_config", "state_dict", "metrics", "classes"}
    m2 = models.load_model(path)
    assert not m2.training
    assert torch.allclose(m(x), m2(x))
    assert m2.metrics["test_accuracy"] == 0.5


def test_bad_checkpoints_are_refused(tmp_path):
    p = tmp_path / "junk.pt"
    p.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        models.load_model(p)
    torch.save({"hello": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a workbench checkpoint"):
        models.load_model(tmp_path / "other.pt")


def test_pickled_objects_are_never_loaded(tmp_path):
    class Evil:
        def __reduce__(self):
            return (exec, ("open('/tmp/pwned_fmnist','w')",))
    torch.save({"model_config": Evil(), "state_dict": {}}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError):
        models.load_model(tmp_path / "evil.pt")


@pytest.mark.parametrize("bad", [dict(activation="swishy"), dict(dropout=1.5), dict(hidden=(0,))])
def test_invalid_mlp_configs(bad):
    with pytest.raises(ConfigError):
        models.layer_plan(models.MLPConfig(**bad))


def test_config_dict_round_trip():
    cfg = models.preset("cnn-seed002")["model"]
    assert models.config_from_dict(models.config_to_dict(cfg)) == cfg
    with pytest.raises(ConfigError, match="unknown kind"):
        models.config_from_dict({"kind": "rnn"})


def test_pool_first_moves_pooling_before_batchnorm_and_activation():
    base = models.CNNConfig(channels=(8, 16), batchnorm=True)
    fast = models.CNNConfig(channels=(8, 16), batchnorm=True, pool_first=True)
    assert [s.kind for s in models.layer_plan(base)][1:5] == ["conv", "batchnorm2d", "act", "pool"]
    assert [s.kind for s in models.layer_plan(fast)][1:5] == ["conv", "pool", "batchnorm2d", "act"]
    # the same parameters, in the same names: only the order of the parameter-free layers moves
    assert [r["shape"] for r in models.parameter_table(models.build_model(base))] == \
        [r["shape"] for r in models.parameter_table(models.build_model(fast))]
    # without batchnorm, max pooling commutes with ReLU: identical outputs for identical weights
    a = models.build_model(models.CNNConfig(channels=(8, 16))).eval()
    b = models.build_model(models.CNNConfig(channels=(8, 16), pool_first=True)).eval()
    b.load_state_dict(a.state_dict())
    x = torch.rand(4, 1, 28, 28)
    assert torch.allclose(a(x), b(x), atol=1e-6)


def test_plan_parameters_counts_every_preset_without_building_it():
    from fmnist_core.models import PRESETS, build_model, count_parameters, plan_parameters, preset
    for name in PRESETS:
        cfg = preset(name)["model"]
        assert plan_parameters(cfg) == count_parameters(build_model(cfg)), name
    huge = models.MLPConfig(hidden=(8192,) * 50)
    assert plan_parameters(huge) == 784 * 8192 + 8192 + 49 * (8192 * 8192 + 8192) + 8192 * 10 + 10  # nothing allocated


def test_a_crafted_huge_config_is_refused_before_any_model_is_built(tmp_path, monkeypatch):
    """A file whose config asks for 6 x 8,192 hidden layers beside a tiny model's weights: before
    the fix, load_model built the 342 M-parameter model (1.4 GB of weights; 2.2 GB peak in the review) and only then failed."""
    import torch
    from fmnist_core import models
    from fmnist_core.errors import CheckpointError
    from conftest import random_checkpoint, run_cli
    small = random_checkpoint(tmp_path / "small.pt", models.MLPConfig(hidden=(8,)))
    ckpt = torch.load(small, weights_only=True)
    ckpt["model_config"] = models.config_to_dict(models.MLPConfig(hidden=(8192,) * 6))
    torch.save(ckpt, tmp_path / "crafted.pt")
    built = []
    real_build = models.build_model
    monkeypatch.setattr(models, "build_model", lambda cfg: built.append(cfg) or real_build(cfg))
    with pytest.raises(CheckpointError, match=r"asks for 342,097,930 parameters but the file holds only 6,[\d,]+ numbers"):
        models.load_model(tmp_path / "crafted.pt")
    assert built == []  # refused from the layer plan's count, nothing allocated
    models.load_model(small)  # an honest checkpoint still loads
    assert len(built) == 1
    out = run_cli("evaluate", tmp_path / "crafted.pt", timeout=120)
    assert out.returncode != 0 and out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and "asks for" in out.stderr
    for junk in ({"model_config": [1], "state_dict": {}}, {"model_config": {}, "state_dict": [1, 2]}):
        torch.save(junk, tmp_path / "junk.pt")
        with pytest.raises(CheckpointError, match="not a workbench checkpoint"):
            models.load_model(tmp_path / "junk.pt")
