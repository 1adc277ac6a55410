"""A class of your own in a real Chromium against `streamlit run`: 15 pictures the test draws
(a red five-pointed star, each a little moved, turned and sized, on dark or light paper) go
through the file uploader, show as 28x28, are named, and become an 11-class model; the
held-out stars are recognised, the ten classes stay within a point of the head without the
star, the 11x11 confusion matrix shows the held-out stars in its "star" row, the map shows
the test images coloured by class with the 15 pictures as stars, and a new star tried live is
called "star". The server's artifacts folder holds the
session's pretrained features of the first 1,000 images of each split (tests/conftest.py)."""
from __future__ import annotations

import pytest

from browser_util import (browser, browser_marks, exceptions, open_page, page,  # noqa: F401 (fixtures)
                          screenshot, streamlit_server, wait_charts, wait_idle)
from conftest import link_features, star_png

pytestmark = browser_marks()
pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")


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
    # the confusion matrix, drawn by Plotly as Results draws it, with an 11th row and column "star"
    page.locator(".st-key-own_cm .js-plotly-plot .main-svg").first.wait_for(timeout=60_000)
    wait_charts(page)
    cm = page.evaluate("""() => { const d = document.querySelector('.st-key-own_cm .js-plotly-plot');
        return {y: Array.from(d._fullData[0].y), text: d._fullData[0].text,
                ticks: Array.from(d.querySelectorAll('.ytick text')).map(t => t.textContent)}; }""")
    assert cm["y"][-1] == "star" and len(cm["y"]) == 11 and "star" in cm["ticks"], cm["y"]
    star_row = [int(v) for v in cm["text"][-1]]
    assert sum(star_row) == 5  # a third of the 15 pictures held out
    assert round(star_row[-1] / 5 * 100) == int(value("held-out").rstrip("%"))
    assert sum(int(v) for row in cm["text"][:10] for v in row) == 1000  # the session's 1,000 test images
    # the map: ten coloured clouds of test images (as on the Map page) and the 15 pictures as stars
    page.locator(".st-key-own_map .js-plotly-plot .main-svg").first.wait_for(timeout=60_000)
    wait_charts(page)
    traces = page.evaluate("""() => document.querySelector('.st-key-own_map .js-plotly-plot')._fullData.map(
        t => ({name: t.name, n: t.x.length, symbol: t.marker.symbol, color: t.marker.color}))""")
    classes, stars = traces[:10], traces[-1]
    assert len(traces) == 11 and sum(t["n"] for t in classes) == 1000, traces
    assert len({t["color"] for t in classes}) == 10
    assert stars["name"] == "your “star” pictures" and stars["n"] == 15 and stars["symbol"] == "star", stars
    screenshot(page, "own-class-trained")
    # try it live: a star it has never seen
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').last.set_input_files(
        files=[{"name": "new.png", "mimeType": "image/png", "buffer": star_png(99)}])
    page.get_by_text("Answer:").wait_for(timeout=60_000)
    wait_idle(page)
    assert "Answer: star" in page.get_by_text("Answer:").inner_text()
    assert exceptions(page) == []
    screenshot(page, "own-class-tried")
