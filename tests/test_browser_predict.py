"""Predict and Inside the network in a real Chromium (Playwright) against `streamlit run`.

What AppTest cannot do: draw on the canvas (a components-v2 widget AppTest shows as an
unknown element) — a stroke drawn with the mouse produces a prediction; upload through the
browser's file input — a real test image, saved upscaled with Pillow, is classified
correctly, and a corrupt file shows the preprocessing message while the page keeps working;
the Inside page picks up the last Predict input across pages. Both pages load (a deep link
as a fresh server's first request included) with no exception box. Screenshots go to
test-output/screenshots/ for a person to look at.

The server runs on 127.0.0.1 with its own artifacts folder (FMNIST_ARTIFACTS), prepared
with one finished run (a small MLP trained here on real images, the model to use when the
shipped CNN is not there yet).
"""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from browser_util import (using_store, ROOT, browser, browser_marks, exceptions, open_page, page,  # noqa: F401 (fixtures)
                          screenshot, streamlit_server, wait_idle)

pytestmark = browser_marks()
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")

REAL_CNN = ROOT / "artifacts" / "models" / "cnn.pt"
TROUSER = 1  # class index


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """An artifacts folder with one finished run, made here; and that run's checkpoint."""
    from fmnist_core import runs
    from fmnist_core.execute import execute_run
    from fmnist_core.spec import run_spec
    from fmnist_core.models import MLPConfig
    from fmnist_core.train import TrainConfig
    base = tmp_path_factory.mktemp("artifacts_predict")
    spec = run_spec(MLPConfig(hidden=(64,)), TrainConfig(epochs=2, batch_size=64, device="cpu"), train_limit=6000)
    with using_store(base):
        run = runs.create_run(spec, label="browser-mlp")
        assert execute_run(run)["status"] == "finished"
        return base, runs.load_run(run)["checkpoint"]


@pytest.fixture(scope="module")
def server(artifacts):
    with streamlit_server(artifacts[0]) as url:
        yield url



def metric(page, label: str) -> str:
    """The value of the st.metric with this label ('' when there is none)."""
    box = page.locator('[data-testid="stMetric"]').filter(has_text=label)
    if box.count() == 0:
        return ""
    return box.first.locator('[data-testid="stMetricValue"]').inner_text().strip()


def choose(page, radio_option: str) -> None:
    """Pick a radio option and wait for the page to redraw with it. The condition is the option
    checked and the script idle: waiting to *see* the rerun start missed one on a busy CI
    machine (60 s, once)."""
    label = page.locator('[data-testid="stRadio"] label').filter(has_text=radio_option).first
    label.click()
    page.wait_for_function("""(text) => [...document.querySelectorAll('[data-testid="stRadio"] label')]
        .some(l => l.innerText.includes(text) && l.querySelector('input') && l.querySelector('input').checked)""",
                           arg=radio_option, timeout=60_000)
    wait_idle(page)


def upscaled_png(x: np.ndarray, side: int = 280) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(x).resize((side, side), Image.Resampling.BICUBIC).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def trouser_png(artifacts, ds):
    """A real test trouser as an upscaled PNG that the model the page uses gets right: the
    shipped CNN's first trouser, or the first one the stand-in MLP classifies correctly
    after the very same preprocessing."""
    from fmnist_core.models import load_model
    from fmnist_core.predict import predict_one
    path = REAL_CNN if REAL_CNN.is_file() else artifacts[1]
    model = load_model(path)
    for i in np.flatnonzero(ds.y_test == TROUSER)[:50]:
        data = upscaled_png(ds.x_test[i])
        if predict_one(model, data)["index"] == TROUSER:
            if REAL_CNN.is_file():
                assert i == np.flatnonzero(ds.y_test == TROUSER)[0], "the shipped CNN misses an easy trouser"
            return data
    pytest.fail(f"{path.name} gets none of 50 trousers right")


def test_both_pages_load_without_an_exception(server, page):
    # a deep link first, on a server nobody has visited yet (Streamlit's legacy pages/ mode)
    for path in ("inside", "predict"):
        open_page(page, server, path)
        page.locator("h1").first.wait_for()
        assert exceptions(page) == [], path
        assert page.get_by_text("Page not found").count() == 0, path
        screenshot(page, f"page-{path}")


def test_a_stroke_on_the_canvas_gives_a_prediction_then_inside_shows_it(server, page):
    open_page(page, server, "predict")
    canvas = page.locator('[data-testid="stMain"] canvas.upper-canvas')
    canvas.wait_for()
    assert metric(page, "PyTorch says") == ""
    box = canvas.bounding_box()
    x0, y0, w = box["x"], box["y"], box["width"]
    # a pair of trousers: two legs from a waistband
    for start, end in (((0.3, 0.1), (0.7, 0.1)), ((0.32, 0.1), (0.25, 0.9)), ((0.68, 0.1), (0.75, 0.9))):
        page.mouse.move(x0 + start[0] * w, y0 + start[1] * w)
        page.mouse.down()
        for k in range(1, 16):
            t = k / 15
            page.mouse.move(x0 + (start[0] + t * (end[0] - start[0])) * w,
                            y0 + (start[1] + t * (end[1] - start[1])) * w)
        page.mouse.up()
    page.get_by_text("PyTorch says").wait_for(timeout=30_000)
    wait_idle(page)
    assert exceptions(page) == []
    said = metric(page, "PyTorch says")
    assert said and said == metric(page, "NumPy twin says")
    page.get_by_text("model input", exact=True).wait_for()
    screenshot(page, "predict-drawing")

    # the same session on the Inside page: the drawing is offered as its input
    page.get_by_role("link", name="Inside the network").click()
    wait_idle(page)
    choose(page, "the last Predict input")
    page.get_by_text("the same numbers, up to float32 rounding").wait_for()
    assert exceptions(page) == []
    screenshot(page, "inside-drawing")


def test_upload_corrupt_then_real_image(server, page, trouser_png):
    open_page(page, server, "predict")
    choose(page, "Upload")
    upload = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
    upload.set_input_files(files=[{"name": "broken.png", "mimeType": "image/png",
                                   "buffer": b"\x89PNG\r\n\x1a\n" + b"\x00not really a picture" * 20}])
    page.get_by_text("Cannot use upload").wait_for(timeout=30_000)
    wait_idle(page)
    assert exceptions(page) == []
    assert "damaged" in page.locator('[data-testid="stAlert"]').filter(has_text="Cannot use").inner_text()
    screenshot(page, "predict-corrupt-upload")
    # the page goes on working: a real test image, upscaled, is classified correctly
    upload.set_input_files(files=[{"name": "trouser.png", "mimeType": "image/png", "buffer": trouser_png}])
    page.get_by_text("PyTorch says").wait_for(timeout=30_000)
    wait_idle(page)
    assert exceptions(page) == []
    assert page.get_by_text("Cannot use upload").count() == 0
    assert metric(page, "PyTorch says") == "Trouser" == metric(page, "NumPy twin says")
    screenshot(page, "predict-upload")


def draw_path(page, canvas, points) -> None:
    """One stroke through these points (fractions of the canvas side), closed."""
    box = canvas.bounding_box()
    x0, y0, w = box["x"], box["y"], box["width"]
    page.mouse.move(x0 + points[0][0] * w, y0 + points[0][1] * w)
    page.mouse.down()
    for (ax, ay), (bx, by) in zip(points, points[1:] + points[:1]):
        for k in range(1, 11):
            t = k / 10
            page.mouse.move(x0 + (ax + t * (bx - ax)) * w, y0 + (ay + t * (by - ay)) * w)
    page.mouse.up()


def test_an_outlined_shoe_gets_the_hint_under_the_canvas(server, page):
    """Outlines are what the model misreads most (scripts/measure_drawings.py: an outlined
    sneaker is a Sandal 9 times in 9): the hint under the canvas says why and shows the
    same drawing filled in, with what the model says then."""
    page.set_viewport_size({"width": 1400, "height": 1000})
    open_page(page, server, "predict")
    canvas = page.locator('[data-testid="stMain"] canvas.upper-canvas')
    canvas.wait_for()
    draw_path(page, canvas, [(0.08, 0.45), (0.4, 0.42), (0.55, 0.55), (0.92, 0.6), (0.93, 0.78), (0.08, 0.78)])
    page.get_by_text("Why the model may misread this drawing").wait_for(timeout=30_000)
    wait_idle(page)
    assert exceptions(page) == []
    hint = page.get_by_text("Your drawing is an outline").first
    assert hint.is_visible()
    assert hint.bounding_box()["x"] < canvas.bounding_box()["x"] + canvas.bounding_box()["width"]  # under the canvas
    page.get_by_text("The same drawing filled in: the model reads").wait_for()
    # the class cards are wide enough for the longest class name in their own font (it was
    # cut to "T-shirt/…"), whatever this drawing is read as
    fits = """e => { const s = document.createElement('span'); s.style.font = getComputedStyle(e).font;
                     s.style.whiteSpace = 'nowrap'; s.textContent = 'T-shirt/top'; document.body.appendChild(s);
                     const w = s.getBoundingClientRect().width; s.remove(); return w <= e.clientWidth; }"""
    for label in ("PyTorch says", "NumPy twin says"):
        card = page.locator('[data-testid="stMetric"]').filter(has_text=label).first
        assert card.locator('[data-testid="stMetricValue"]').evaluate(fits), label
    screenshot(page, "predict-outline-hint")
