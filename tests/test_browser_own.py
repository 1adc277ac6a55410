"""A class of your own in a real Chromium against `streamlit run`: 15 pictures the test draws
(a red five-pointed star, each a little moved, turned and sized, on dark or light paper) go
through the file uploader, show as 28x28, are named, and become an 11-class model; the
held-out stars are recognised, the ten classes stay within a point of the head without the
star, and a new star tried live is called "star". The server's artifacts folder holds the
session's pretrained features of the first 1,000 images of each split (tests/conftest.py)."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from browser_util import (browser, browser_marks, exceptions, open_page, page,  # noqa: F401 (fixtures)
                          screenshot, streamlit_server, wait_idle)
from conftest import link_features

pytestmark = browser_marks()
pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")


def star_png(i: int) -> bytes:
    rng = np.random.default_rng(i)
    im = Image.new("RGB", (160, 160), (25, 25, 30) if i % 2 else (235, 235, 228))
    cx, cy = 80 + rng.integers(-8, 9), 80 + rng.integers(-8, 9)
    r, turn = 58 + rng.integers(-8, 9), rng.normal(0, 0.08)
    pts = [(cx + (r if k % 2 == 0 else 0.4 * r) * np.cos(np.pi / 2 + k * np.pi / 5 + turn),
            cy - (r if k % 2 == 0 else 0.4 * r) * np.sin(np.pi / 2 + k * np.pi / 5 + turn)) for k in range(10)]
    ImageDraw.Draw(im).polygon(pts, fill=(210, 35, 35))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory, lite0_features):
    artifacts = tmp_path_factory.mktemp("artifacts_own")
    link_features(lite0_features, artifacts)
    with streamlit_server(artifacts) as url:
        yield url


def test_a_class_of_your_own_from_uploaded_pictures(server, page):
    open_page(page, server, "own")
    assert exceptions(page) == []
    uploads = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
    uploads.first.set_input_files(files=[{"name": f"star{i}.png", "mimeType": "image/png", "buffer": star_png(i)}
                                         for i in range(15)])
    page.get_by_text("15 pictures, as the network sees them").wait_for(timeout=60_000)
    wait_idle(page)
    assert page.locator('[data-testid="stImage"]').count() >= 15
    name = page.get_by_label("Name of your class")
    name.fill("star")
    name.press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="Train the 11-class model").click()
    held = page.locator('[data-testid="stMetric"]').filter(has_text="held-out")
    held.wait_for(timeout=120_000)
    wait_idle(page)
    assert exceptions(page) == []

    def value(label):
        return page.locator('[data-testid="stMetric"]').filter(has_text=label).locator(
            '[data-testid="stMetricValue"]').inner_text()
    assert int(value("held-out").rstrip("%")) >= 80
    with_, without = (float(value(k).rstrip("%")) for k in ("with yours", "without it"))
    assert abs(with_ - without) <= 1.5, (with_, without)  # 1,000 test images here: a point is 10 of them
    screenshot(page, "own-class-trained")
    # try it live: a star it has never seen
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').last.set_input_files(
        files=[{"name": "new.png", "mimeType": "image/png", "buffer": star_png(99)}])
    page.get_by_text("Answer:").wait_for(timeout=60_000)
    wait_idle(page)
    assert "Answer: star" in page.get_by_text("Answer:").inner_text()
    assert exceptions(page) == []
    screenshot(page, "own-class-tried")
