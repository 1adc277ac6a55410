"""The "Inside the network" page under AppTest: without a model it says what to do; with one,
every layer's PyTorch/NumPy difference is within 1e-4 and the whole-test-set comparison agrees;
it takes the last Predict input; an MLP's first-layer units are shown as images."""
from __future__ import annotations

import numpy as np

from fmnist_core.views import shared

from page_util import captions, metrics, model, no_models, page_app, rerun_until, stand_in, texts  # noqa: F401 (fixtures)


def test_inside_without_any_model(no_models):
    at = page_app("inside").run()
    assert not at.exception
    assert "No trained model yet" in texts(at)


def test_inside_layers_agree_and_whole_test_set(model):
    at = page_app("inside").run()
    assert not at.exception
    assert any("the same numbers, up to float32 rounding" in s.value for s in at.success)
    table = next(d.value for d in at.dataframe if "max |PyTorch − NumPy|" in d.value.columns)
    assert (table["max |PyTorch − NumPy|"] <= 1e-4).all()
    assert table["layer"].tolist()[0] == "norm" and table["layer"].tolist()[-1] == "out"
    params = next(d.value for d in at.dataframe if "parameters" in d.value.columns)
    assert metrics(at)["Parameters in total"] == f"{int(params['parameters'].sum()):,}"
    # the NumPy twin's pictures instead of PyTorch's
    at.radio(key="in_from").set_value("manual").run()
    assert not at.exception
    at.button(key="in_compare_btn").click().run()
    assert not at.exception
    # a shared job of the dispatcher runs it in its own process; the page waits for it
    rerun_until(at, lambda at: "Same predicted class" in metrics(at), timeout=300)
    m = metrics(at)
    assert m["Same predicted class"] == "100.00%"
    assert m["Accuracy, PyTorch"] == m["Accuracy, NumPy twin"]
    assert float(m["Largest output difference"]) <= 1e-4


def test_inside_shows_the_last_predict_input(model):
    x = np.zeros((28, 28), np.float32)
    x[4:24, 10:18] = 1.0  # a bright bar: something drawn
    at = page_app("inside")
    at.session_state["pr_last"] = {"x": x, "what": "your drawing", "truth": None}
    at.run()
    at.radio(key="in_input").set_value("predict").run()
    assert not at.exception
    assert "your drawing" in captions(at)


def test_inside_mlp_first_layer_units(model, stand_in, monkeypatch):
    monkeypatch.setattr(shared, "SHIPPED_DIR", stand_in)  # an MLP: fc1's units as images
    at = page_app("inside").run()
    at.selectbox(key="in_model").select("shipped:mlp").run()
    at.select_slider(key="in_units").set_value(64).run()
    assert not at.exception
    assert any("the first 64 of 64 units of fc1" in c for c in captions(at))
