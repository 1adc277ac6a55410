"""The Home / Data page under AppTest: where to start (links to Train, Results, Predict), classes,
devices, the shipped models' table (or what to do when they are missing), and the "Other
examples" button."""
from __future__ import annotations

import pytest
import torch

from page_util import finished_run, page_app, shipped_mlp, texts  # noqa: F401 (fixtures)


def test_home_page_shows_classes_models_and_devices(runs_dir):
    at = page_app("home").run()
    assert not at.exception
    body = texts(at)
    for name in ("T-shirt/top", "Ankle boot", "Sneaker"):
        assert name in body
    assert "**cpu**" in body
    # the shipped models are either listed with their accuracy or reported as not trained yet
    assert at.dataframe or "not yet trained" in body
    # a first visitor's next step: Train, then Results, then Predict, as links
    assert "Start here" in body
    # ...and it names the preset Train really opens on
    from fmnist_core.models import DEMO_PRESET
    assert f"Train opens on *{DEMO_PRESET}*" in body
    assert [(link.proto.label, link.proto.page) for link in at.get("page_link")] == \
        [("Train", "train"), ("Results", "results"), ("Predict", "predict")]
    seed = at.session_state["home_seed"]
    at.button(key="home_shuffle").click().run()
    assert not at.exception and at.session_state["home_seed"] == seed + 1


@pytest.mark.slow
def test_a_shipped_model_is_listed_with_its_accuracy(shipped_mlp):
    acc = torch.load(shipped_mlp, weights_only=True)["metrics"]["test_accuracy"]
    at = page_app("home").run()
    assert not at.exception
    table = at.dataframe[0].value
    # named as the pickers name it, with the preset it was trained from (issue 25: "the MLP" was three models)
    assert table["model"].tolist() == ["MLP"] and table["test accuracy"].tolist() == [acc]
    assert table["preset"].tolist() == [torch.load(shipped_mlp, weights_only=True)["metrics"].get("preset")]
    assert "**cnn**: not yet trained" in texts(at)
