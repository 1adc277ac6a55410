"""The Predict page under AppTest: it renders with and without a model; a test image gives a
prediction (PyTorch and the NumPy twin side by side, and the right class under the shipped CNN
when it is there); a corrupt upload shows the preprocessing module's message and the page goes
on working; the camera stays off until asked."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from fmnist_core.data import CLASSES

from page_util import captions, metrics, model, no_models, page_app, stand_in, texts  # noqa: F401 (fixtures)

EASY = {2: "Trouser", 0: "Ankle boot"}  # clearly recognisable test images


def png(x: np.ndarray, side: int = 280, invert: bool = False, fmt: str = "PNG") -> bytes:
    """A test image as a file: upscaled, optionally dark-on-light like a photo on paper."""
    img = Image.fromarray(255 - x if invert else x).resize((side, side), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def test_predict_without_any_model_says_what_to_do(no_models):
    at = page_app("predict").run()
    assert not at.exception
    assert "No trained model yet" in texts(at)
    # the inputs still work: a test image is shown, with no prediction
    at.radio(key="pr_source").set_value("test").run()
    assert not at.exception and captions(at)[0] == "test image #0: Ankle boot"
    assert "PyTorch says" not in metrics(at)


def test_predict_draw_is_the_default_and_asks_for_a_drawing(model):
    at = page_app("predict").run()
    assert not at.exception
    assert at.radio(key="pr_source").value == "draw"
    assert at.selectbox(key="pr_model").value == model["key"]
    assert "Draw a garment" in texts(at)
    assert not at.error


@pytest.mark.parametrize("index", sorted(EASY))
def test_predict_a_test_image_both_implementations(model, index):
    from fmnist_core.data import load
    from fmnist_core.models import load_model
    from fmnist_core.predict import predict_array
    at = page_app("predict").run()
    at.radio(key="pr_source").set_value("test").run()
    at.number_input(key="pr_test_idx").set_value(index).run()
    assert not at.exception
    m = metrics(at)
    assert m["PyTorch says"] == m["NumPy twin says"]
    assert float(m["Largest difference"]) < 1e-4
    x = load().x_test[index]
    expected = predict_array(load_model(model["path"]), x / np.float32(255))["label"]
    assert m["PyTorch says"] == expected
    if model["real_cnn"]:
        assert m["PyTorch says"] == EASY[index]
    assert f"The true class is **{EASY[index]}**" in texts(at)
    # the input is kept for the Inside page
    assert at.session_state["pr_last"]["what"] == f"test image #{index}"


def test_predict_random_test_image_of_a_class(model):
    at = page_app("predict").run()
    at.radio(key="pr_source").set_value("test").run()
    at.selectbox(key="pr_test_class").select("Bag").run()
    at.button(key="pr_test_random").click().run()
    assert not at.exception
    assert "The true class is **Bag**" in texts(at)


def test_predict_corrupt_upload_shows_the_message_and_the_page_goes_on(model):
    from fmnist_core.data import load
    at = page_app("predict").run()
    at.radio(key="pr_source").set_value("upload").run()
    at.file_uploader(key="pr_upload").set_value(("shirt.png", b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 40,
                                                 "image/png")).run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("Cannot use upload “shirt.png”: the "), errors
    assert "damaged" in errors[0]  # the preprocessing module's own sentence
    at.file_uploader(key="pr_upload").set_value(("notes.txt", b"hello, this is not a picture\n",
                                                 "text/plain")).run()
    assert "this is a text file, not an image" in at.error[0].value
    # a real image afterwards: preprocessing steps and a prediction
    at.file_uploader(key="pr_upload").set_value(("trouser.png", png(load().x_test[2]), "image/png")).run()
    assert not at.exception and not at.error
    shown = captions(at)
    # the preprocessing steps, from the original to the model input (sections below add pictures)
    assert shown[0] == "original" and "model input" in shown
    assert metrics(at)["PyTorch says"] == metrics(at)["NumPy twin says"]


def test_predict_camera_is_off_until_asked_then_classifies_a_photo(model):
    from fmnist_core.data import load
    at = page_app("predict").run()
    at.radio(key="pr_source").set_value("camera").run()
    assert not at.exception
    assert len(at.camera_input) == 0  # no camera widget, so no permission prompt, until asked
    at.toggle(key="pr_cam_on").set_value(True).run()
    assert len(at.camera_input) == 1
    photo = png(load().x_test[0], side=480, invert=True, fmt="JPEG")  # a dark boot on white paper
    at.camera_input(key="pr_camera").set_value(("photo.jpg", photo, "image/jpeg")).run()
    assert not at.exception and not at.error
    assert "negated (light background)" in captions(at)
    assert metrics(at)["PyTorch says"] in CLASSES
