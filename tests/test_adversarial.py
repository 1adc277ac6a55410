"""fmnist_core.adversarial on the real test images and the shipped models: FGSM flips
predictions within epsilon and [0, 1], the smallest-epsilon search brackets the flip exactly,
the robustness curve starts at the clean accuracy, falls, and is cached per checkpoint
content; bad input gets one clear sentence."""
from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fmnist_core import adversarial as adv
from fmnist_core.errors import ConfigError
from conftest import ROOT
from conftest import skip_unless_ci

SHIPPED = {name: ROOT / "artifacts" / "models" / f"{name}.pt" for name in ("cnn", "mlp")}
MODEST = 0.05  # 13 gray levels of 255


@pytest.fixture(scope="module", params=sorted(SHIPPED))
def shipped(request):
    from fmnist_core.models import load_model
    path = SHIPPED[request.param]
    if not path.is_file():
        skip_unless_ci(f"{path} is not there (make models)")
    return path, load_model(path)


def test_fgsm_at_a_modest_epsilon_flips_real_test_images(shipped, ds):
    _, model = shipped
    flipped = 0
    for i in range(20):
        x = ds.x_test[i] / 255.0
        r = adv.attack_one(model, x, "FGSM", MODEST)
        a, d = r["adversarial"], r["perturbation"]
        assert a.shape == (28, 28) and 0.0 <= a.min() and a.max() <= 1.0
        assert np.abs(d).max() <= MODEST + 1e-6
        np.testing.assert_allclose(a - x, d, atol=1e-6)
        assert r["before"]["index"] == int(model(torch.tensor(x, dtype=torch.float32)[None, None]).argmax())
        assert r["flipped"] == (r["after"]["index"] != r["before"]["index"])
        flipped += r["flipped"]
    # measured: the shipped CNN and MLP lose about half of these at 13 gray levels
    assert flipped >= 3, flipped
    # epsilon 0 changes nothing
    r0 = adv.attack_one(model, ds.x_test[0], "PGD", 0.0)
    assert not r0["flipped"] and np.abs(r0["perturbation"]).max() == 0


@pytest.mark.parametrize("attack", adv.ATTACKS)
def test_the_smallest_epsilon_flips_and_one_gray_level_less_does_not(shipped, ds, attack):
    _, model = shipped
    for i in range(5):  # the first image the search finds a flip for within 0.25
        found = adv.smallest_flip(model, ds.x_test[i], attack, search_max=64 / 255)
        if found["epsilon"] is not None:
            break
    else:
        pytest.fail(f"{attack} flips none of the first five test images up to 64/255")
    eps = found["epsilon"]
    assert found["attack"] == attack and found["resolution"] == pytest.approx(1 / 255)
    assert round(eps * 255) == pytest.approx(eps * 255, abs=1e-6)  # on the grid
    assert found["result"]["flipped"] and found["result"]["epsilon"] == eps
    assert adv.attack_one(model, ds.x_test[i], attack, eps)["flipped"]
    assert not adv.attack_one(model, ds.x_test[i], attack, eps - 1 / 255)["flipped"]
    if attack == "PGD":
        assert found["tried"] <= 8  # bisection over 64 grid points, not a scan


def test_pgd_needs_no_larger_epsilon_than_fgsm(shipped, ds):
    _, model = shipped
    x = ds.x_test[0]
    f, p = (adv.smallest_flip(model, x, a, search_max=64 / 255)["epsilon"] for a in adv.ATTACKS)
    assert f is not None and p is not None and p <= f


@pytest.fixture(scope="module")
def subset(ds):
    """The first 600 real test images, as the curve reads a dataset."""
    return SimpleNamespace(x_test=ds.x_test[:600], y_test=ds.y_test[:600])


def test_robustness_curve_starts_clean_falls_and_is_cached(tmp_path, monkeypatch, subset):
    from fmnist_core.evaluate import predict_logits
    from fmnist_core.models import load_model
    if not SHIPPED["mlp"].is_file():
        skip_unless_ci("the shipped MLP is not there")
    monkeypatch.setenv("FMNIST_ARTIFACTS", str(tmp_path))
    ckpt = tmp_path / "copy.pt"
    shutil.copyfile(SHIPPED["mlp"], ckpt)
    eps = (0.0, 0.02, 0.05, 0.1)
    seen = []
    c = adv.robustness_curve(ckpt, subset, "FGSM", eps, progress=lambda f, t: seen.append(f))
    assert not c["cached"] and c["n"] == 600 and c["epsilons"] == list(eps)
    model = load_model(ckpt)
    clean = float((predict_logits(model, subset.x_test).argmax(1).numpy() == subset.y_test).mean())
    assert c["accuracy"][0] == clean
    acc = c["accuracy"]
    assert all(b <= a + 0.01 for a, b in zip(acc, acc[1:])), acc  # monotone, give or take
    assert acc[-1] < acc[0] - 0.2, acc
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)
    # the batch shortcut (one gradient for every epsilon) is captum's FGSM at each epsilon
    x, y = subset.x_test[:200], subset.y_test[:200].astype(np.int64)
    direct = adv.perturb(model, x, y, "FGSM", 0.05)
    short = adv.robustness_curve(ckpt, SimpleNamespace(x_test=x, y_test=y), "FGSM", (0.05,))
    assert short["accuracy"][0] == float((model(direct).argmax(1).numpy() == y).mean())

    # cached: under artifacts/cache/robustness, keyed by content, read without computing
    path = adv.cache_path(ckpt, "FGSM", eps)
    assert path.parent == tmp_path / "cache" / "robustness" and path.is_file()
    assert path.name.startswith(adv.file_hash(SHIPPED["mlp"]))
    moved = tmp_path / "moved.pt"
    ckpt.rename(moved)
    monkeypatch.setattr(adv, "perturb", lambda *a, **k: pytest.fail("computed again"))
    again = adv.robustness_curve(moved, subset, "FGSM", eps)
    assert again["cached"] and again["accuracy"] == acc
    assert not any(p.name.endswith(".tmp") for p in path.parent.iterdir())


def test_pgd_curve_runs_on_every_tenth_image(tmp_path, monkeypatch, subset):
    from fmnist_core.evaluate import predict_logits
    from fmnist_core.models import load_model
    if not SHIPPED["mlp"].is_file():
        skip_unless_ci("the shipped MLP is not there")
    monkeypatch.setenv("FMNIST_ARTIFACTS", str(tmp_path))
    c = adv.robustness_curve(SHIPPED["mlp"], subset, "pgd", (0.0, 0.05))
    assert c["attack"] == "PGD" and c["n"] == 60 and c["every_nth_test_image"] == 10
    clean = (predict_logits(load_model(SHIPPED["mlp"]), subset.x_test[::10]).argmax(1).numpy()
             == subset.y_test[::10]).mean()
    assert c["accuracy"][0] == float(clean) and c["accuracy"][1] < c["accuracy"][0]


@pytest.mark.parametrize("attack, eps, words", [
    ("FGSM", -0.1, "epsilon must be between 0 and 1"),
    ("FGSM", float("nan"), "epsilon must be between 0 and 1"),
    ("FGSM", 2, "epsilon must be between 0 and 1"),
    ("FGSM", "lots", "epsilon must be a number"),
    ("DeepFool", 0.1, "unknown attack 'DeepFool'; choose one of FGSM, PGD"),
])
def test_bad_input_gets_one_clear_sentence(tmp_path, monkeypatch, ds, attack, eps, words):
    monkeypatch.setenv("FMNIST_ARTIFACTS", str(tmp_path))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()
    with pytest.raises(ConfigError) as e:
        adv.attack_one(model, ds.x_test[0], attack, eps)
    msg = str(e.value)
    assert words in msg and "\n" not in msg
    with pytest.raises(ConfigError, match=words.split(";")[0].replace("(", r"\(")):
        adv.robustness_curve(tmp_path / "never-read.pt", ds, attack, (0.0, eps))
    assert not (tmp_path / "cache").exists()


def test_a_missing_or_damaged_checkpoint_is_one_sentence(tmp_path, monkeypatch, ds):
    from fmnist_core.errors import CheckpointError
    monkeypatch.setenv("FMNIST_ARTIFACTS", str(tmp_path))
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        adv.robustness_curve(tmp_path / "gone.pt", ds)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        adv.robustness_curve(bad, ds)
    assert not list((tmp_path / "cache").glob("**/*.json"))


def test_the_attack_leaves_the_model_as_it_was(ds):
    """A model in training mode is attacked in eval mode (batchnorm's running statistics, used
    by every other prediction, stay untouched) and handed back in training mode."""
    from fmnist_core.models import load_model
    if not SHIPPED["mlp"].is_file():
        skip_unless_ci("the shipped MLP is not there")
    model = load_model(SHIPPED["mlp"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    clean = adv.attack_one(model, ds.x_test[1], "PGD", 0.03)
    model.train()
    again = adv.attack_one(model, ds.x_test[1], "PGD", 0.03)
    assert model.training
    np.testing.assert_array_equal(clean["adversarial"], again["adversarial"])
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.parameters())


def test_the_cache_key_is_the_checkpoints_content_and_a_rewrite_is_recomputed(tmp_path, monkeypatch, subset):
    """The expected key is computed here from the file's bytes, not by the function under test
    (a constant hash passed the older tests); the same path rewritten with other weights is a
    new key, so its curve is computed again, not read from the old file's cache."""
    import hashlib
    from conftest import random_checkpoint
    from fmnist_core.models import MLPConfig
    monkeypatch.setenv("FMNIST_ARTIFACTS", str(tmp_path))
    ckpt = random_checkpoint(tmp_path / "model.pt", MLPConfig(hidden=(32,)), seed=1)
    eps = (0.0, 0.05)
    first = adv.robustness_curve(ckpt, subset, "FGSM", eps)
    want = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert adv.cache_path(ckpt, "FGSM", eps).name.startswith(f"{want}-fgsm-")
    assert adv.robustness_curve(ckpt, subset, "FGSM", eps)["cached"]
    random_checkpoint(ckpt, MLPConfig(hidden=(32,)), seed=2)  # the same path, other weights
    assert hashlib.sha256(ckpt.read_bytes()).hexdigest() != want
    calls = []
    real = adv.perturb
    monkeypatch.setattr(adv, "perturb", lambda *a, **k: calls.append(1) or real(*a, **k))
    second = adv.robustness_curve(ckpt, subset, "FGSM", eps)
    assert not second["cached"] and second["accuracy"] != first["accuracy"]
    assert adv.cache_path(ckpt, "FGSM", eps).name.startswith(hashlib.sha256(ckpt.read_bytes()).hexdigest())
    assert len(list((tmp_path / "cache" / "robustness").glob("*.json"))) == 2
