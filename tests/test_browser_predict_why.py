"""The Predict page's "Why this class?" section in a real Chromium (Playwright) against
`streamlit run`, with the shipped CNN: a test image gets its attribution overlay drawn (an image
the browser decoded, with the overlay's red in it), and picking another class in the class
picker draws another one; an upload is also overlaid on the picture itself. Screenshots go to
test-output/screenshots/."""
from __future__ import annotations

import io
import re

import pytest
from PIL import Image

from conftest import CI
from browser_util import (ROOT, browser, browser_marks, exceptions, open_page, page,  # noqa: F401 (fixtures)
                          screenshot, streamlit_server, wait_idle, rerun_after)

pytestmark = [*browser_marks(),
              pytest.mark.skipif(not CI and not (ROOT / "artifacts" / "models" / "cnn.pt").is_file(),
                                 reason="the shipped CNN is not there (make models)")]
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")

OVERLAY = "attribution on the model input"
ON_ORIGINAL = "the same, on your picture"
# red share of an <img>: pixels where red clearly dominates (the overlay's "evidence for" colour)
RED_SHARE = """img => { const c = document.createElement('canvas'); c.width = img.naturalWidth;
    c.height = img.naturalHeight; const g = c.getContext('2d'); g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data; let red = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i] > d[i + 1] + 60 && d[i] > d[i + 2] + 60) red++;
    return red / (d.length / 4); }"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with streamlit_server(tmp_path_factory.mktemp("artifacts_why")) as url:
        yield url


def image_with_caption(page, caption: str):
    return page.locator('[data-testid="stImage"]').filter(has_text=caption).first.locator("img")


def pick(page, label: str, option: str) -> None:
    box = page.locator('[data-testid="stSelectbox"]').filter(
        has=page.locator('[data-testid="stWidgetLabel"]', has_text=re.compile(f"^{label}$")))
    wanted = page.locator('[role="option"]').filter(has_text=re.compile(f"^{re.escape(option)}$")).first
    wait_idle(page)  # the sections below (Fool the model) may still be running: a rerun closes the list
    for attempt in range(3):
        box.first.locator("input").click()
        try:
            wanted.wait_for(timeout=15_000)
            break
        except sync_api.TimeoutError:
            page.keyboard.press("Escape")
            wait_idle(page)
    rerun_after(page, wanted.click)


def drawn(page, caption: str) -> tuple[str, float]:
    """(src, red share) of the overlay image with this caption, once the browser decoded it."""
    img = image_with_caption(page, caption)
    img.wait_for(timeout=30_000)
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img.element_handle())
    return img.get_attribute("src"), img.evaluate(RED_SHARE)


def test_test_image_overlay_changes_with_the_class_picker(server, page):
    open_page(page, server, "predict")
    page.locator('[data-testid="stRadio"] label').filter(has_text="Test image").first.click()
    page.get_by_text("Why this class?").wait_for(timeout=60_000)
    wait_idle(page)
    assert exceptions(page) == []
    src, red = drawn(page, f"Ankle boot: {OVERLAY}")
    assert red > 0.02  # the evidence for the boot is drawn in red (Integrated Gradients)
    screenshot(page, "predict-why-boot")
    pick(page, "Class", "Sandal")
    page.get_by_text(f"Sandal: {OVERLAY}").wait_for(timeout=30_000)
    src2, _ = drawn(page, f"Sandal: {OVERLAY}")
    assert src2 != src
    pick(page, "Method", "Grad-CAM")
    assert exceptions(page) == []
    assert drawn(page, f"Sandal: {OVERLAY}")[0] not in (src, src2)
    screenshot(page, "predict-why-sandal-gradcam")


def test_an_upload_is_overlaid_on_the_picture_too(server, page, ds):
    open_page(page, server, "predict")
    page.locator('[data-testid="stRadio"] label').filter(has_text="Upload").first.click()
    wait_idle(page)
    buf = io.BytesIO()  # a real test trouser, dark on white like a scan, off-centre on the page
    canvas = Image.new("L", (420, 300), 255)
    canvas.paste(Image.fromarray(255 - ds.x_test[2]).resize((240, 240), Image.Resampling.BICUBIC), (20, 30))
    canvas.save(buf, format="PNG")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
        files=[{"name": "trouser.png", "mimeType": "image/png", "buffer": buf.getvalue()}])
    page.get_by_text(ON_ORIGINAL).wait_for(timeout=60_000)
    wait_idle(page)
    assert exceptions(page) == []
    _, red = drawn(page, ON_ORIGINAL)
    assert red > 0.003  # the gray upload has no red at all: hundreds of red pixels are the overlay
    screenshot(page, "predict-why-upload")
