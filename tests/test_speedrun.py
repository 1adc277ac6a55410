"""The speedrun techniques (fmnist_core/speedrun.py) and the speedrun presets, on the real data:
the whitening conv is frozen and whitens, test-time augmentation is the mean over the views it
names, the EMA is the average it should be, flips alternate, and a speedrun preset trains through
the normal trainer into a checkpoint that loads and that the NumPy twin runs."""
import numpy as np
import pytest
import torch

from fmnist_core import models
from fmnist_core.evaluate import images_to_tensor
from fmnist_core.speedrun import (WeightEMA, alternate_flips, init_whitening, shift, tta_logits, tta_views,
                                  whitening_weights)
from fmnist_core.train import TrainConfig, train


@pytest.fixture(scope="module")
def trained(ds, tmp_path_factory):
    """speedrun-93 for one short epoch on 2,048 training images, through the normal trainer
    (whitening from the data, alternating flips, EMA, scaled batchnorm biases), saved."""
    p = models.preset("speedrun-93")
    # batch 128, not the preset's 512: 16 steps rather than 4 on this subset
    cfg = TrainConfig(**{**p["train"], "epochs": 1, "batch_size": 128, "device": "cpu", "threads": 1, "seed": 0})
    res = train(p["model"], cfg, ds, train_limit=2048)
    path = tmp_path_factory.mktemp("speedrun") / "speedrun-93.pt"
    models.save_checkpoint(path, res.model, metrics={"preset": "speedrun-93"})
    return res, path


def _patch_moments(x: torch.Tensor, k: int) -> torch.Tensor:
    p = torch.nn.functional.unfold(x, k).transpose(1, 2).reshape(-1, k * k)
    return p.T @ p / len(p)


def test_whitening_conv_whitens_the_patches_and_stays_frozen(ds, trained):
    res, _ = trained
    model = res.model
    conv = model.whiten
    assert not conv.weight.requires_grad and not conv.bias.requires_grad  # out of the optimizer
    assert torch.count_nonzero(conv.bias) == 0
    # the weights the trainer left are the ones the training images give: training never moved them
    x_tr = images_to_tensor(ds.x_train[:2048])
    fresh = models.build_model(model.config)
    init_whitening(fresh, x_tr)
    assert torch.equal(fresh.whiten.weight, conv.weight)
    # on other images (the test set), the positive half of its output has the patches' second
    # moment ~ identity at every interior position; the raw patches are far from it
    with torch.no_grad():
        xs = model.norm(images_to_tensor(ds.x_test[:500]))
        out = conv(xs)[:, :9, 1:-1, 1:-1]  # (N, 9, 26, 26): a patch per position, no padding
    m = out.permute(0, 2, 3, 1).reshape(-1, 9)
    cov = m.T @ m / len(m)
    off = ~torch.eye(9, dtype=torch.bool)
    # uncorrelated directions; unit variance up to eps's shrinkage of the weakest ones
    assert cov[off].abs().max() < 0.05 and 0.75 < cov.diag().min() and cov.diag().max() < 1.1, cov
    raw = _patch_moments(xs, 3)
    assert raw[off].abs().max() > 0.5  # neighbouring pixels: what the test would see without it
    # and the negated half is exactly the negative (so an activation keeps both signs)
    assert torch.equal(conv.weight[9:], -conv.weight[:9])


def test_whitening_weights_make_the_second_moment_the_identity_on_their_own_data(ds):
    xs = (images_to_tensor(ds.x_train[:1000]) - models.DATA_MEAN) / models.DATA_STD
    w = whitening_weights(xs, 3, eps=1e-6)
    out = torch.nn.functional.conv2d(xs, w[:9])
    m = out.permute(0, 2, 3, 1).reshape(-1, 9)
    assert torch.allclose(m.T @ m / len(m), torch.eye(9), atol=0.03)


def test_tta_is_the_mean_of_the_model_on_flipped_and_shifted_inputs(ds, trained):
    model = trained[0].model.eval()
    x = images_to_tensor(ds.x_test[:64])
    # the shift moves the garment one pixel down and right, black coming in
    s = shift(x, 1, 1)
    assert torch.equal(s[..., 1:, 1:], x[..., :-1, :-1]) and s[..., 0, :].abs().sum() == 0 == s[..., :, 0].abs().sum()
    views = tta_views(x, 2)
    assert len(views) == 4 and torch.equal(views[1], x.flip(-1)) and torch.equal(views[3], shift(x.flip(-1), 1, 1))
    with torch.no_grad():
        plain, flipped, shifted = model(x), model(x.flip(-1)), model(s)
        both = model(shift(x.flip(-1), 1, 1))
    assert torch.equal(tta_logits(model, x, 0), plain)
    assert torch.allclose(tta_logits(model, x, 1), (plain + flipped) / 2, atol=1e-5)
    assert torch.allclose(tta_logits(model, x, 2), (plain + flipped + shifted + both) / 4, atol=1e-5)
    assert not torch.allclose(flipped, plain, atol=1e-3)  # the views do differ: the test can fail


def test_ema_is_the_average_it_should_be():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    ema = WeightEMA(model, decay=0.9)
    expect = model.weight.detach().clone()
    for t in range(40):
        with torch.no_grad():
            model.weight.add_(torch.randn_like(model.weight))
        ema.update()
        d = min(0.9, (1 + t) / (10 + t))  # the warm-up: early steps follow the weights closely
        expect = d * expect + (1 - d) * model.weight.detach()
    assert torch.allclose(ema.model.weight, expect, atol=1e-6)
    assert not torch.allclose(ema.model.weight, model.weight, atol=1e-2)


def test_flips_alternate_between_epochs():
    base = torch.rand(1000, generator=torch.Generator().manual_seed(0)) < 0.5
    e1, e2, e3 = (alternate_flips(base, e) for e in (1, 2, 3))
    assert torch.equal(e1, ~e2) and torch.equal(e1, e3) and 400 < int(e1.sum()) < 600


def test_speedrun_preset_trains_loads_and_the_twin_agrees(ds, trained):
    from fmnist_core.twin import ManualNet
    res, path = trained
    assert res.status == "finished" and res.epochs_run == 1 and res.precision in ("fp32", "bf16")
    loaded = models.load_model(path)
    x = ds.x_test[:500]
    with torch.no_grad():
        ref = loaded(images_to_tensor(x)).numpy()
    mine = ManualNet.from_checkpoint(path).forward(x)
    assert float(np.abs(mine - ref).max()) < 1e-3
    assert (ref.argmax(1) == ds.y_test[:500]).mean() > 0.6
    assert "whiten.weight" in models.read_checkpoint(path)["state_dict"]  # the frozen layer travels
