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


# --- drawings: outline, proportions, line width -------------------------------------------------

def canvas(polys, width=24, fill=False, side=308):
    """A drawing as the Predict canvas returns it: white strokes on black, RGBA."""
    from PIL import Image, ImageDraw
    im = Image.new("RGBA", (side, side), (0, 0, 0, 255))
    d = ImageDraw.Draw(im)
    for p in polys:
        if fill:
            d.polygon(p, fill=(255, 255, 255, 255))
        d.line(p + [p[0]], fill=(255, 255, 255, 255), width=width, joint="curve")
    return np.asarray(im)


SNEAKER = [[(30, 150), (120, 140), (170, 180), (280, 195), (285, 240), (30, 240)]]
WIDE_TSHIRT = [[(60, 80), (130, 70), (154, 95), (178, 70), (248, 80), (290, 130), (262, 150), (240, 130),
                (240, 230), (68, 230), (68, 130), (46, 150), (18, 130)]]


def prepared(img):
    from fmnist_core.preprocess import preprocess
    x, steps = preprocess(img, return_steps=True)
    return x, dict(steps)["trimmed to the item"].size


def test_the_dataset_is_solid_and_an_outline_is_not(ds):
    shares = np.array([view.ink_share(a / 255.0) for a in ds.x_test[:500]])
    assert np.median(shares) > 0.95 and (shares < view.OUTLINE_SHARE).mean() < 0.05
    x, _ = prepared(canvas(SNEAKER))
    assert view.ink_share(x) < view.OUTLINE_SHARE
    assert view.ink_share(view.filled_in(x)) > 0.95  # the holes are filled ...
    assert view.filled_in(x)[x > view.INK_LEVEL].tolist() == x[x > view.INK_LEVEL].tolist()  # ... the ink kept


def test_drawing_advice_names_what_differs_from_the_dataset():
    x, size = prepared(canvas(SNEAKER, width=10))
    kinds = [k for k, _ in view.drawing_advice(x, size, 10, "Sandal")]
    assert kinds == ["outline", "thin"]  # 10 px of a 255 px wide drawing: ~1.1 px at 28x28
    x, size = prepared(canvas(SNEAKER, fill=True))
    assert view.drawing_advice(x, size, 24, "Sneaker") == []
    x, size = prepared(canvas(WIDE_TSHIRT, fill=True))
    tips = dict(view.drawing_advice(x, size, 24, "Bag"))
    # read as Bag, a wide drawing may be a top or a shoe: both hints, proportions said once, as words
    assert list(tips) == ["wide", "shoe"] and "taller than wide" in tips["wide"]
    assert "times as wide as tall" in tips["wide"] and " : 1" not in tips["wide"]
    assert "times as wide as tall" in tips["shoe"] and not tips["shoe"].startswith("Your drawing is")
    assert view.drawing_advice(x, size, 24, "Sneaker") == []  # not a top: its proportions are its own
    # a wide T-shirt the model reads as a top, and is sure of: nothing to correct
    assert view.drawing_advice(x, size, 24, "T-shirt/top", 0.846) == []
    assert [k for k, _ in view.drawing_advice(x, size, 24, "T-shirt/top", 0.3)] == ["wide"]
    assert view.ratio_words(87, 100) == "about 1.1 times as wide as tall"
    assert view.ratio_words(130, 100) == "about 1.3 times as tall as wide"


def test_an_outlined_sneaker_is_a_sandal_until_filled_in():
    """What the outline hint says, with the shipped CNN (scripts/measure_drawings.py: 0 of 9
    outlined sneakers read right, all Sandal; filled in, 7 of 9)."""
    from conftest import ROOT
    cnn = ROOT / "artifacts" / "models" / "cnn.pt"
    if not cnn.is_file():
        pytest.skip("the shipped CNN is not there")
    model, net = load_pair(cnn)
    x, _ = prepared(canvas(SNEAKER))
    assert view.predict_both(model, net, x)["label"] == "Sandal"
    assert view.predict_both(model, net, view.filled_in(x))["label"] == "Sneaker"


def test_preprocessing_tiles_are_fixed_squares_on_a_dark_frame():
    """Issue 25, item 5: a tall thin image stays a square tile, letterboxed on a dark frame."""
    from PIL import Image
    tall = Image.new("L", (30, 400), 255)
    tile = view.tile(tall)
    assert tile.size == (view.TILE_SIDE, view.TILE_SIDE)
    px = np.asarray(tile)
    assert tuple(px[view.TILE_SIDE // 2, 2]) == view.TILE_FRAME  # the frame beside the thin image
    assert px[view.TILE_SIDE // 2, view.TILE_SIDE // 2].min() > 200  # the image itself, in the middle
    small = view.tile(Image.new("L", (28, 28), 128))
    assert small.size == (view.TILE_SIDE, view.TILE_SIDE)
    assert np.asarray(small)[view.TILE_SIDE // 2, view.TILE_SIDE // 2, 0] == 128  # whole-factor, unblurred


def test_fool_starts_where_fgsm_changes_the_answer(ds):
    """Issue 25, item 10: the first level shown changes the answer (for any input the search can)."""
    from fmnist_core import adversarial
    from fmnist_core.models import load_model
    from conftest import ROOT
    model = load_model(ROOT / "artifacts" / "models" / "cnn.pt")
    for i in range(5):
        x = ds.x_test[i].astype(np.float32) / 255
        level = view.fool_start_level(model, x)
        assert 1 <= level <= 64
        if adversarial.smallest_flip(model, x, "FGSM", search_max=64 / 255)["epsilon"] is not None:
            assert adversarial.attack_one(model, x, "FGSM", level / 255)["flipped"], (i, level)
