"""The "Step through" page under AppTest: set up the seed-000 MLP, step, see every stage and
autograd's agreement; Reset replays the first step's loss; a template sets itself up; a CNN's
conv pixel is explained with the layer's own value; a bad set-up is one sentence and loses
nothing; the last Predict input can be the batch."""
from __future__ import annotations

import re

import numpy as np

from page_util import metrics, page_app, texts


def _loss(at) -> float:
    return float(metrics(at)["Loss on the batch"])


def test_step_mlp_every_stage_and_reset_replays(runs_dir):
    at = page_app("step").run()
    assert not at.exception
    assert "press **Set up**" in texts(at)
    at.button(key="sp_setup").click().run()
    assert not at.exception and "101,770 parameters" in texts(at)
    assert at.button(key="sp_epoch").disabled  # the same batch every step has no epoch
    losses = []
    for _ in range(3):
        at.button(key="sp_step").click().run()
        assert not at.exception
        losses.append(_loss(at))
    assert metrics(at)["Step"] == "3"
    assert len(set(losses)) == 3 and losses[-1] < losses[0]  # the same batch, learned
    ok = [s.value for s in at.success if "autograd" in s.value]
    assert ok and "the same numbers, up to float64 rounding" in ok[0]
    assert float(re.search(r"twin \*\*([0-9.e+-]+)\*\*", ok[0]).group(1)) <= 1e-6
    captions = [c for im in at.image for c in im.captions]
    assert any("gradient of fc1.weight" in c for c in captions)
    assert any("gradient of out.weight" in c for c in captions)
    assert any("update (after − before)" in c for c in captions)
    assert "−log p(true class" in texts(at)
    at.button(key="sp_reset").click().run()
    at.button(key="sp_step").click().run()
    assert not at.exception and _loss(at) == losses[0]
    assert metrics(at)["Step"] == "1"


def test_step_optimizer_changes_between_steps_and_adam_moments(runs_dir):
    at = page_app("step").run()
    at.button(key="sp_setup").click().run()
    at.button(key="sp_step").click().run()
    at.selectbox(key="sp_optimizer").select("adam").run()
    at.number_input(key="sp_lr").set_value(0.001).run()
    at.button(key="sp_run10").click().run()
    assert not at.exception
    assert metrics(at)["Step"] == "11"
    assert "Adam, step t = 10" in texts(at)
    captions = [c for im in at.image for c in im.captions]
    assert any("first moment" in c for c in captions)


def test_step_one_epoch_of_new_batches(runs_dir):
    at = page_app("step").run()
    at.checkbox(key="sp_same_batch").uncheck().run()
    at.number_input(key="sp_batch").set_value(256).run()
    at.button(key="sp_setup").click().run()
    assert at.button(key="sp_epoch").disabled is False
    at.button(key="sp_epoch").click().run()
    assert not at.exception
    assert metrics(at)["Step"] == "235"             # 60,000 images, 256 a step: every image once
    # the epoch's last batch holds what is left: 60,000 - 234 x 256 = 96 images
    assert "batch's first 8 of 96 images" in " ".join(c for im in at.image for c in im.captions)


def test_step_template_and_bad_setup(runs_dir):
    at = page_app("step").run()
    at.button(key="sp_t_vanishing").click().run()
    assert not at.exception
    assert "hundreds of times smaller" in texts(at)
    at.button(key="sp_step").click().run()
    assert not at.exception
    # own MLP too big: one sentence, and the stepper set up before is kept
    at.selectbox(key="sp_model").select("own-mlp").run()
    at.text_input(key="sp_hidden").input("4096, 4096").run()
    at.button(key="sp_setup").click().run()
    assert not at.exception
    assert any("parameters; the step-through takes at most" in e.value for e in at.error)
    assert metrics(at)["Step"] == "1"
    at.text_input(key="sp_hidden").input("12, x").run()
    at.button(key="sp_setup").click().run()
    assert any("whole numbers separated by commas" in e.value for e in at.error)


def test_step_cnn_conv_pixel_explained(runs_dir):
    at = page_app("step").run()
    at.selectbox(key="sp_model").select("cnn-small").run()
    at.number_input(key="sp_batch").set_value(8).run()
    at.button(key="sp_setup").click().run()
    at.button(key="sp_step").click().run()
    assert not at.exception
    at.number_input(key="sp_ch").set_value(3).run()
    at.number_input(key="sp_row").set_value(14).run()
    at.number_input(key="sp_col").set_value(12).run()
    assert not at.exception
    t = texts(at)
    m = re.search(r"conv1, channel 3, pixel \(row 14, column 12\).*makes \*\*(-?\d+\.\d+)\*\* — the layer's output "
                  r"there is (-?\d+\.\d+)", t)
    assert m and m.group(1) == m.group(2), t[:2000]
    assert "Backward: dLoss/d(this output)" in t


def test_step_last_predict_input_as_the_batch(runs_dir):
    x = np.zeros((28, 28), np.float32)
    x[4:24, 10:18] = 1.0  # a bright bar: something drawn
    at = page_app("step")
    at.session_state["pr_last"] = {"x": x, "what": "your drawing", "truth": None}
    at.run()
    at.radio(key="sp_source").set_value("drawing").run()
    at.selectbox(key="sp_label").select(1).run()  # Trouser
    at.button(key="sp_setup").click().run()
    at.button(key="sp_step").click().run()
    assert not at.exception
    losses = [_loss(at)]
    at.button(key="sp_run10").click().run()
    assert _loss(at) < losses[0]
    assert "Trouser" in " ".join(c for im in at.image for c in im.captions)
