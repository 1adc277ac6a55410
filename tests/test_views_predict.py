"""fmnist_core.views.predict: one input through PyTorch and the NumPy twin gives the same class
and probabilities within 1e-5; the probability table puts them side by side."""
from __future__ import annotations

import numpy as np
import pytest

from fmnist_core.models import CNNConfig, MLPConfig
from fmnist_core.views import predict as view
from fmnist_core.views.shared import load_pair

from conftest import random_checkpoint


@pytest.mark.parametrize("cfg", [MLPConfig(hidden=(64, 32), batchnorm=True, dropout=0.2),
                                 CNNConfig(channels=(4, 8), kernel=5, pool="avg", fc=(16,), batchnorm=True)],
                         ids=["mlp", "cnn"])
def test_both_implementations_agree(tmp_path, ds, cfg):
    model, net = load_pair(random_checkpoint(tmp_path / "m.pt", cfg))
    r = view.predict_both(model, net, ds.x_test[0])
    assert r["agree"] and r["max_prob_diff"] < 1e-5
    assert r["torch"].sum() == pytest.approx(1.0, abs=1e-5) and r["manual"].sum() == pytest.approx(1.0, abs=1e-5)
    assert r["label"] == r["manual_label"]


def test_probability_table():
    r = {"torch": np.array([0.7, 0.3] + [0.0] * 8, np.float32),
         "manual": np.array([0.7, 0.3 + 1e-7] + [0.0] * 8, np.float32)}
    t = view.probability_table(r)
    assert list(t.columns) == ["class", "PyTorch", "NumPy twin", "|difference|"] and len(t) == 10
    assert t["|difference|"].max() == pytest.approx(1e-7, rel=0.2)


def test_camera_needs_https_off_this_machine():
    from fmnist_core.views.predict import camera_blocked
    for ok in ("http://localhost:8501/predict", "http://127.0.0.1:8501/predict", "https://10.0.0.5:8501/predict",
               "http://[::1]:8501/predict", "https://class.example:8501/"):
        assert camera_blocked(ok) is None, ok
    msg = camera_blocked("http://192.168.1.20:8501/predict")
    assert "https" in msg and "192.168.1.20:8501" in msg and "upload" in msg
