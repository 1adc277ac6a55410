"""views.step on real training images: each stage's figures are the record's own numbers
(probabilities against the one-hot label, dLoss/dlogits = (p - y) / N, gradient and update
norms), the set-up turns choices into steppers or one sentence, the curves hold every metric,
a conv pixel's sentence carries the layer's value, and render draws a whole step."""
from __future__ import annotations

import numpy as np
import pytest

from fmnist_core.data import CLASSES
from fmnist_core.errors import ConfigError
from fmnist_core.views import step as view


@pytest.fixture(scope="module")
def mlp(ds):
    s = view.make_stepper({"model": "mlp-seed000", "optimizer": "adam", "lr": 0.01, "batch": 16}, ds.x_train,
                          ds.y_train)
    s.step()
    return s, s.step()


@pytest.fixture(scope="module")
def cnn(ds):
    s = view.make_stepper({"model": "cnn-small", "optimizer": "momentum", "lr": 0.05, "batch": 8}, ds.x_train,
                          ds.y_train)
    return s, s.step()


def test_loss_stage_is_softmax_against_one_hot(mlp):
    _, rec = mlp
    for i in (0, 5):
        t = view.loss_stage(rec, i)
        assert list(t["class"]) == list(CLASSES)
        assert t["probability"].sum() == pytest.approx(1.0, abs=1e-12)
        assert t["one-hot label"].tolist().index(1.0) == rec.labels[i]
        expected = (t["probability"] - t["one-hot label"]) / len(rec.labels)
        assert np.abs(t["dLoss/dlogit"] - expected).max() <= 1e-15
        assert view.image_loss(rec, i) == pytest.approx(-np.log(t["probability"][int(rec.labels[i])]))


def test_forward_backward_and_update_figures_are_the_records(mlp):
    s, rec = mlp
    fw = view.forward(rec, 1)
    assert [r["name"] for r in fw] == ["norm", "flatten", "fc1", "act1", "out"]
    assert np.array_equal(next(r for r in fw if r["name"] == "act1")["values"], rec.layers[3]["out"][1])
    assert (next(r for r in fw if r["name"] == "act1")["values"] >= 0).all()
    bw = view.backward(rec, 1)
    assert [r["name"] for r in bw] == ["out", "act1", "fc1"]  # from the loss down to the first weights
    fc1 = next(r for r in bw if r["name"] == "fc1")
    assert fc1["weight_grad_norm"] == pytest.approx(float(np.linalg.norm(rec.grads["fc1.weight"])))
    assert fc1["weight_grad_picture"].ndim == 3  # 28x28 images of the gradient, as RGB
    up = view.update(rec).set_index("parameter")
    for n in rec.grads:
        assert up.loc[n, "|update|"] == pytest.approx(float(np.linalg.norm(rec.after[n] - rec.before[n])))
        assert up.loc[n, "|m| (1st moment)"] == pytest.approx(float(np.linalg.norm(rec.optimizer["m"][n])))
    assert "Adam, step t = 2" in view.update_rule(rec)
    first = view.first_layer(rec)
    assert first["layer"] == "fc1" and first["shown"] == view.UNITS and first["total"] == 128
    assert view.adam_moments(rec) is not None
    ok, text = view.check_sentence(rec.check)
    assert ok and "the same numbers" in text


def test_effect_and_curves(mlp):
    s, rec = mlp
    e = view.effect(rec)
    assert e["loss"] == rec.loss and e["loss_after"] == rec.loss_after
    assert len(e["table"]) == len(rec.images)
    assert e["accuracy"] == pytest.approx(float((rec.pred == rec.labels).mean()))
    df = view.curves(s.history)
    assert set(df["metric"]) == {"loss", "mean", "std", "dead", "grad_norm", "update_ratio"}
    assert df[df["metric"] == "loss"]["value"].tolist() == [h["loss"] for h in s.history]
    assert view.gradient_ratio(s.history[-1]) == pytest.approx(
        s.history[-1]["layers"]["fc1"]["grad_norm"] / s.history[-1]["layers"]["out"]["grad_norm"])


def test_check_sentence_flags_a_difference():
    ok, text = view.check_sentence({"largest": 3e-3, "loss": 0.0, "activation_grads": 3e-3, "grads": 1e-16,
                                    "updates": 1e-17})
    assert not ok and "a bug in the twin" in text
    ok, text = view.check_sentence({"largest": float("nan"), "loss": float("nan"), "activation_grads": 0.0,
                                    "grads": 0.0, "updates": 0.0})
    assert not ok and "overflowed" in text and "bug" not in text


def test_conv_pixel_sentence_and_render(cnn):
    s, rec = cnn
    e = view.conv_pixel(rec, "conv2", 5, 7, 4, 3)
    assert f"makes **{e['value']:.6f}**" in e["sentence"]
    assert f"{float(rec.layers[[d['name'] for d in rec.layers].index('conv2')]['out'][3, 7, 4, 5]):.6f}" \
        in e["sentence"]
    assert any("pool2: max of its 2×2 window" in t for t in e["steps"])
    assert e["pictures"]["patch"].shape == e["pictures"]["kernel"].shape
    assert view.conv_map(rec, "conv1", 2, 0).shape == (28, 28)
    out = view.render(s, rec)
    assert {"forward", "first", "loss", "backward", "update", "effect", "curves", "conv", "check"} <= set(out)


def test_set_up_choices_and_sentences(ds):
    assert view.config_of({"model": "own-mlp", "hidden": "64, 32", "activation": "tanh"}).hidden == (64, 32)
    cnn = view.config_of({"model": "own-cnn", "channels": "4,8", "kernel": 5, "pool": "avg", "fc": "16"})
    assert cnn.channels == (4, 8) and cnn.kernel == 5 and cnn.pool == "avg"
    with pytest.raises(ConfigError, match="whole numbers"):
        view.config_of({"model": "own-mlp", "hidden": "64, wide"})
    with pytest.raises(ConfigError, match="unknown activation"):
        view.config_of({"model": "own-mlp", "hidden": "8", "activation": "swish"})
    with pytest.raises(ConfigError, match="no drawing yet"):
        view.make_stepper({"source": "drawing"}, ds.x_train, ds.y_train, None)
    x = np.zeros((28, 28))
    x[5:20, 8:20] = 1.0
    s = view.make_stepper({"source": "drawing", "lr": 0.5}, ds.x_train, ds.y_train, {"x": x, "label": 8})
    rec = s.step()
    assert rec.labels.tolist() == [8] and np.array_equal(rec.images[0], x)
    for name in view.TEMPLATES:
        view.size_note(view.config_of(view.template_choice(name)), view.TEMPLATES[name]["batch"])
