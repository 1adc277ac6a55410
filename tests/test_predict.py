"""predict + the `predict` CLI, with the shipped CNN (artifacts/models/cnn.pt).

The faithfulness test is the point of the preprocessing: real test images turned into what a
person would upload must be classified about as well as the originals.
"""
import io
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import run_cli
from conftest import skip_unless_ci
from fmnist_core.data import CLASSES
from fmnist_core.errors import ImageError
from fmnist_core.evaluate import predict_logits
from fmnist_core.predict import (default_model_path, predict_array, predict_arrays, predict_images,
                                 predict_one)
from fmnist_core.preprocess import preprocess

# faithfulness: accuracy on upload-style copies may fall at most this far below the originals'
# (measured with the 2-epoch development CNN, 1000 images: 0.851 original, 0.851 uploads, 0.849 canvas)
ACCURACY_TOLERANCE = 0.02


@pytest.fixture(scope="module")
def model():
    path = default_model_path()
    if not path.is_file():
        skip_unless_ci(f"the shipped model {path} is absent, and these tests are about it "
                    "(any CNN checkpoint saved there will do)")
    from fmnist_core.models import load_model
    return load_model(path)


@pytest.fixture(scope="module")
def untrained():
    """A CNN the size of the shipped one, untrained: enough for shapes, speed and plumbing,
    so those tests run even before the shipped model exists."""
    import torch
    from fmnist_core.models import CNNConfig, build_model
    torch.manual_seed(0)
    return build_model(CNNConfig(channels=(32, 64), kernel=3, fc=(128,), batchnorm=True, dropout=0.2)).eval()


def encode(im, fmt, **kw):
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def as_user_upload(a: np.ndarray, rng) -> bytes:
    """What a person uploads: x4..x8 bigger, dark on light paper, a light margin, a JPEG."""
    k, margin, paper = int(rng.integers(4, 9)), int(rng.integers(10, 61)), int(rng.integers(235, 256))
    big = Image.fromarray(255 - a).resize((28 * k, 28 * k), Image.Resampling.BICUBIC)
    page = Image.new("L", (28 * k + 2 * margin,) * 2, paper)
    page.paste(big.point(lambda v: v * paper // 255), (margin, margin))
    return encode(page.convert("RGB"), "JPEG", quality=int(rng.integers(75, 96)))


def as_canvas(a: np.ndarray, white_on_black: bool) -> bytes:
    """A drawing-canvas export: 280x280 PNG, white on black or black on white."""
    im = Image.fromarray(a if white_on_black else 255 - a).resize((280, 280), Image.Resampling.BILINEAR)
    return encode(im.convert("RGBA"), "PNG")


def test_prediction_contract(untrained, ds):
    r = predict_one(untrained, ds.x_test[0])
    assert set(r) == {"label", "index", "probabilities", "top3"}
    assert r["label"] == CLASSES[r["index"]] and list(r["probabilities"]) == list(CLASSES)
    assert abs(sum(r["probabilities"].values()) - 1) < 1e-5
    probs = [t["probability"] for t in r["top3"]]
    assert probs == sorted(probs, reverse=True) and r["top3"][0]["label"] == r["label"]
    assert max(r["probabilities"].values()) == probs[0]
    json.dumps(r)  # plain types only


def test_batch_equals_one_by_one(untrained, ds):
    model = untrained
    imgs = [ds.x_test[i] for i in range(5)]
    batch = predict_images(model, imgs)
    for im, r in zip(imgs, batch):
        one = predict_one(model, im)
        assert one["label"] == r["label"]
        assert np.allclose(list(one["probabilities"].values()), list(r["probabilities"].values()), atol=1e-5)
    assert predict_arrays(model, []) == []


def test_bad_image_in_a_batch_is_named(untrained, ds):
    model = untrained
    with pytest.raises(ImageError, match="image 2: the file is empty"):
        predict_images(model, [ds.x_test[0], b""])
    with pytest.raises(ImageError, match="28×28"):
        predict_array(model, np.zeros((32, 32), np.float32))


def test_torch_thread_count_is_left_as_it_was(untrained, ds):
    import torch
    before = torch.get_num_threads()
    predict_one(untrained, ds.x_test[0])
    predict_arrays(untrained, ds.x_test[:100] / 255.0)
    assert torch.get_num_threads() == before


@pytest.mark.shipped
def test_uploads_are_classified_as_well_as_the_originals(model, ds):
    """1000 real test images, as dark-on-light JPEG uploads and as canvas PNGs."""
    rng = np.random.default_rng(0)
    idx = rng.choice(len(ds.x_test), 1000, replace=False)
    x, y = ds.x_test[idx], ds.y_test[idx]
    pred_orig = predict_logits(model, x).argmax(1).numpy()
    uploads = np.stack([preprocess(as_user_upload(a, rng)) for a in x])
    pred_up = predict_logits(model, uploads).argmax(1).numpy()
    canvas = np.stack([preprocess(as_canvas(a, white_on_black=bool(i % 2))) for i, a in enumerate(x[:300])])
    pred_canvas = predict_logits(model, canvas).argmax(1).numpy()
    acc_orig, acc_up = (pred_orig == y).mean(), (pred_up == y).mean()
    acc_canvas_orig, acc_canvas = (pred_orig[:300] == y[:300]).mean(), (pred_canvas == y[:300]).mean()
    print(f"accuracy: original {acc_orig:.4f}, uploads {acc_up:.4f}, same label {(pred_up == pred_orig).mean():.4f}; "
          f"canvas (300) original {acc_canvas_orig:.4f}, canvas {acc_canvas:.4f}")
    assert acc_up >= acc_orig - ACCURACY_TOLERANCE
    assert acc_canvas >= acc_canvas_orig - ACCURACY_TOLERANCE
    assert (pred_up == pred_orig).mean() > 0.9  # mostly the same answers, not just as many right


@pytest.mark.shipped
def test_canvas_colours_do_not_change_the_answer(model, ds):
    for a in ds.x_test[10:20]:
        white = predict_one(model, as_canvas(a, white_on_black=True))
        black = predict_one(model, as_canvas(a, white_on_black=False))
        assert white["label"] == black["label"]
        assert abs(white["probabilities"][white["label"]] - black["probabilities"][black["label"]]) < 0.05


@pytest.mark.shipped
def test_a_drawn_trouser_is_a_trouser(model):
    """A filled trouser silhouette, drawn black on a white canvas as a person would."""
    im = Image.new("RGB", (280, 280), "white")
    d = ImageDraw.Draw(im)
    d.polygon([(95, 20), (185, 20), (195, 260), (150, 260), (140, 90), (130, 260), (85, 260)], fill="black")
    assert predict_one(model, encode(im, "PNG"))["label"] == "Trouser"


# --- the CLI -----------------------------------------------------------------------------------

@pytest.mark.shipped
def test_cli_predicts_and_reports_bad_files(model, ds, tmp_path):
    good = tmp_path / "boot.jpg"
    Image.fromarray(255 - ds.x_test[0]).resize((200, 200)).convert("RGB").save(good, quality=90)
    (tmp_path / "notes.png").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "drawing.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"></svg>')
    files = [good, tmp_path / "notes.png", tmp_path / "empty.png", tmp_path / "drawing.svg",
             tmp_path / "missing.png"]
    before = sorted(tmp_path.iterdir())
    p = run_cli("predict", *files)
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stderr
    lines = [json.loads(line) for line in p.stdout.splitlines()]
    assert [x["file"] for x in lines] == [str(f) for f in files]
    assert set(lines[0]) == {"file", "label", "probabilities"} and lines[0]["label"] == CLASSES[ds.y_test[0]]
    assert abs(sum(lines[0]["probabilities"].values()) - 1) < 1e-4
    assert all(set(x) == {"file", "error"} for x in lines[1:])
    assert "text file" in lines[1]["error"] and "empty" in lines[2]["error"]
    assert lines[3]["error"] == "SVG is not supported, export as PNG" and "not found" in lines[4]["error"]
    assert sorted(tmp_path.iterdir()) == before  # nothing written

    ok = run_cli("predict", "--model", default_model_path(), good, good)
    assert ok.returncode == 0 and len(ok.stdout.splitlines()) == 2


def test_cli_without_a_model_is_one_line(tmp_path):
    p = run_cli("predict", "--model", tmp_path / "none.pt", tmp_path / "x.png")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().startswith("error: checkpoint not found") and len(p.stderr.strip().splitlines()) == 1
