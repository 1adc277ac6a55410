"""The Predict page's "Why this class?" section under AppTest, with the shipped models: the
class picker starts on the predicted class and another class redraws the overlay; Grad-CAM is
offered for the CNN only; for the MLP the twin's gradient sits beside captum's with their
largest difference; an upload is also drawn over the original picture."""
from __future__ import annotations

import io

import pytest
from PIL import Image

from conftest import CI, ROOT
from page_util import captions, metrics, page_app, rerun_until, texts

MODELS = ROOT / "artifacts" / "models"
pytestmark = [pytest.mark.shipped,
              pytest.mark.skipif(not CI and (not (MODELS / "cnn.pt").is_file() or not (MODELS / "mlp.pt").is_file()),
                                 reason="the shipped models are not there (make models)")]


def test_test_image_on_the_cnn_then_another_class_and_method(runs_dir):
    at = page_app("predict").run()
    at.selectbox(key="pr_model").select("shipped:cnn").run()
    at.radio(key="pr_source").set_value("test").run()
    assert not at.exception
    assert "Why this class?" in texts(at)
    assert at.selectbox(key="pr_why_class").value == metrics(at)["PyTorch says"] == "Ankle boot"
    assert at.selectbox(key="pr_why_method").options == ["Gradient saliency", "Integrated Gradients",
                                                         "Occlusion", "Grad-CAM"]
    overlay = next(im for im in at.image if "attribution on the model input" in im.captions[0])
    assert "Ankle boot: attribution on the model input" in captions(at)
    at.selectbox(key="pr_why_class").select("Sandal").run()
    at.selectbox(key="pr_why_method").select("gradcam").run()
    assert not at.exception and not at.error
    assert "Sandal: attribution on the model input" in captions(at)
    assert "Grad-CAM" in texts(at) and "evidence for **Sandal**" in texts(at)
    redrawn = next(im for im in at.image if "attribution on the model input" in im.captions[0])
    assert redrawn.proto.imgs[0].url != overlay.proto.imgs[0].url
    assert "The mechanism: the gradient by hand" not in texts(at)  # no twin backward for CNNs


def test_upload_on_the_mlp_shows_the_original_and_the_twin(runs_dir, ds):
    at = page_app("predict").run()
    at.selectbox(key="pr_model").select("shipped:mlp").run()
    at.radio(key="pr_source").set_value("upload").run()
    buf = io.BytesIO()
    Image.fromarray(255 - ds.x_test[2]).resize((300, 300), Image.Resampling.BICUBIC).save(buf, format="PNG")
    at.file_uploader(key="pr_upload").set_value(("trouser.png", buf.getvalue(), "image/png")).run()
    assert not at.exception and not at.error
    assert at.selectbox(key="pr_why_method").options == ["Gradient saliency", "Integrated Gradients", "Occlusion"]
    shown = captions(at)
    assert "the same, on your picture (through the crop and scale)" in shown
    assert {"captum saliency", "NumPy twin's backward"} <= set(shown)
    assert float(metrics(at)["Twin vs captum: largest difference"]) <= 1e-5


def test_the_page_shows_which_methods_beat_the_model_free_baselines(runs_dir, ds):
    """The figures the deletion check asserts (tests/test_explain.py) are on the page, computed
    here independently with the core on the same model and images."""
    import numpy as np
    from fmnist_core import explain
    from fmnist_core.models import load_model
    from fmnist_core.views import explain as view
    at = page_app("predict").run()
    at.selectbox(key="pr_model").select("shipped:mlp").run()
    at.radio(key="pr_source").set_value("test").run()
    at.button(key="pr_faith_btn").click().run()
    assert not at.exception
    # a shared analysis job computes it in its own process; the page shows its progress meanwhile
    rerun_until(at, lambda at: at.dataframe and "its top 10% deleted" in at.dataframe[-1].value.columns,
                timeout=300)
    table = at.dataframe[-1].value
    x = ds.x_test[:view.FAITHFULNESS_IMAGES].astype(np.float32) / np.float32(255)
    mlp = load_model(MODELS / "mlp.pt")
    for _, row in table.iterrows():
        method = next(m for m, v in explain.METHODS.items() if v["title"] == row["method"])
        ref = explain.deletion_check(mlp, x, method)
        assert row["its top 10% deleted"] == pytest.approx(ref["after_top"], abs=1e-6)
        assert row["brightest 10%"] == pytest.approx(ref["after_intensity"], abs=1e-6)
        assert row["random garment 10%"] == pytest.approx(ref["after_garment"], abs=1e-6)
        assert bool(row["beats the baselines"]) == ref["beats"]
    assert list(table["method"]) == [explain.METHODS[m]["title"] for m in explain.methods_for(mlp)]
