"""The Map page in a real Chromium (Playwright) against `streamlit run`: the PCA map of the
shipped CNN's penultimate layer is drawn, and a lasso dragged over it with the mouse (Plotly's
dragmode "lasso", the page's default) shows a grid of the selected test images — what
AppTest cannot do (it has no Plotly selection). The server runs with its own artifacts folder
(an empty cache); the map is the one shipped with the CNN (artifacts/models/maps/), so the
page draws it at once (tests/test_pages_map.py checks that no job is made for it).
"""
from __future__ import annotations

import math
import re

import pytest

from conftest import skip_unless_ci

from browser_util import (ROOT, browser, browser_marks, exceptions, page,  # noqa: F401 (fixtures)
                          screenshot, streamlit_server, wait_idle)

pytestmark = browser_marks()
pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")

REAL_CNN = ROOT / "artifacts" / "models" / "cnn.pt"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not REAL_CNN.is_file():
        skip_unless_ci("the shipped CNN (artifacts/models/cnn.pt) is not there: make models")
    with streamlit_server(tmp_path_factory.mktemp("artifacts_map")) as url:
        yield url


def _plot_area(page):
    """The bounding box of the map's drag layer (the plot area that takes mouse drags)."""
    chart = page.locator('[data-testid="stPlotlyChart"]').first
    chart.wait_for(timeout=120_000)
    layer = chart.locator(".nsewdrag").first
    layer.wait_for(timeout=30_000)
    return layer.bounding_box()


def test_lasso_selection_shows_images(page, server):
    # the shipped map is read at once; the generous timeout is for a crowded machine's first
    # page load (torch, the dataset)
    page.goto(f"{server}/map")
    page.wait_for_selector('[data-testid="stPlotlyChart"]', timeout=300_000)
    wait_idle(page, timeout=120)
    assert not exceptions(page)
    body = page.locator('[data-testid="stMain"]').inner_text()
    assert "PCA of act_fc1" in body  # the shipped CNN's layer before the output
    assert "Nothing selected" in body
    assert page.locator('[data-testid="stImage"]').count() == 0
    box = _plot_area(page)
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    r = min(box["width"], box["height"]) * 0.3
    # a closed lasso: a 24-sided polygon around the middle of the map, drawn with the mouse
    page.mouse.move(cx + r, cy)
    page.mouse.down()
    for k in range(1, 25):
        a = 2 * math.pi * k / 24
        page.mouse.move(cx + r * math.cos(a), cy + r * math.sin(a), steps=3)
    page.mouse.up()
    page.wait_for_selector('[data-testid="stImage"]', timeout=60_000)
    wait_idle(page, timeout=60)
    screenshot(page, "map-lasso")
    body = page.locator('[data-testid="stMain"]').inner_text()
    m = re.search(r"([\d,]+) images? selected", body)
    assert m, body[-800:]
    n = int(m.group(1).replace(",", ""))
    assert 1 <= n < 10_000
    img = page.locator('[data-testid="stImage"] img').first
    size = img.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    shown = min(n, 100)
    cols = min(shown, 20)
    assert size[0] == cols * 56 + (cols - 1) * 2  # 28-pixel images upscaled 2x, 2-pixel gaps
    assert not exceptions(page)
