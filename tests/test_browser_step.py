"""The Step-through page in a real Chromium (Playwright), against `streamlit run`.

What AppTest cannot do: click a pixel of a Plotly chart. The test sets up the seed-000 MLP,
steps three times and sees the batch loss change and the gradient images drawn (loaded, with a
size), resets and sees the first step's loss again; then sets up the small CNN, steps, and
clicks one pixel of conv1's feature map: the explanation names that very pixel and its value is
the layer's. Screenshots go to test-output/screenshots/.
"""
from __future__ import annotations

import re

import pytest

from browser_util import (browser, browser_marks, exceptions, open_page, page, screenshot,  # noqa: F401 (fixtures)
                          streamlit_server, wait_idle)

pytestmark = browser_marks()
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
SLOW = 120_000  # ms: a step under a load of 10 on two cores, plus the server's first imports


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with streamlit_server(tmp_path_factory.mktemp("artifacts_step")) as url:
        yield url


def metric(page, label: str):
    return page.locator('[data-testid="stMetric"]').filter(has_text=label).first.locator(
        '[data-testid="stMetricValue"]')


def press(page, key: str) -> None:
    page.locator(f".st-key-{key} button").first.click()


def step_to(page, n: int) -> float:
    """Press Step, wait until the page shows step n; the batch loss it shows."""
    press(page, "sp_step")
    sync_api.expect(metric(page, "Step")).to_have_text(str(n), timeout=SLOW)
    wait_idle(page, timeout=120)
    return float(metric(page, "Loss on the batch").inner_text())


def pick(page, key: str, option: str) -> None:
    wanted = page.locator('[role="option"]').filter(has_text=option).first
    for _ in range(3):  # a rerun still drawing can close the list: open it again
        wait_idle(page, timeout=120)
        page.locator(f".st-key-{key} input").first.click()
        try:
            wanted.wait_for(timeout=15_000)
            break
        except sync_api.TimeoutError:
            page.keyboard.press("Escape")
    wanted.click()
    wait_idle(page, timeout=120)


def test_step_mlp_reset_and_a_conv_pixel(server, page):
    open_page(page, server, "step")
    assert exceptions(page) == []
    press(page, "sp_setup")                     # the default: the seed-000 MLP, SGD 0.1, 64 images
    page.locator(".st-key-sp_step button").wait_for(timeout=SLOW)
    losses = [step_to(page, n) for n in (1, 2, 3)]
    assert len(set(losses)) == 3, losses          # the same batch, learned step by step
    assert losses[2] < losses[0]
    body = page.locator('[data-testid="stMain"]').inner_text()
    assert "the same numbers, up to float64 rounding" in body
    page.get_by_role("tab", name="3 · Backward").click()
    for caption in ("gradient of fc1.weight", "gradient of out.weight"):
        img = page.locator('[data-testid="stImage"]').filter(has_text=caption).first.locator("img")
        img.wait_for(timeout=SLOW)
        sync_api.expect(img).to_be_visible()
        page.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=img.element_handle(), timeout=SLOW)
    screenshot(page, "step-mlp-backward")
    press(page, "sp_reset")
    sync_api.expect(page.get_by_text("Press Step")).to_be_visible(timeout=SLOW)
    assert step_to(page, 1) == losses[0]           # the same initialisation, the same batch: bit for bit
    assert exceptions(page) == []

    # a small CNN: click one pixel of conv1's map, read its explanation
    page.locator('[data-testid="stExpander"] summary').filter(has_text="Set-up").first.click()
    pick(page, "sp_model", "small CNN")
    press(page, "sp_setup")
    sync_api.expect(page.get_by_text("Press Step")).to_be_visible(timeout=SLOW)
    step_to(page, 1)
    page.get_by_role("tab", name="A convolution, pixel by pixel").click()
    layer = page.locator(".st-key-sp_map .nsewdrag").first
    layer.wait_for(timeout=SLOW)
    box = layer.bounding_box()
    row, col = 9, 19                              # the map is 28 x 28 pixels, row 0 at the top
    page.mouse.click(box["x"] + (col + 0.5) / 28 * box["width"], box["y"] + (row + 0.5) / 28 * box["height"])
    found = page.get_by_text(re.compile(rf"conv1, channel 0, pixel \(row {row}, column {col}\)"))
    sync_api.expect(found.first).to_be_visible(timeout=SLOW)
    wait_idle(page, timeout=120)
    text = found.first.inner_text()
    m = re.search(r"makes (-?\d+\.\d+) — the layer's output there is (-?\d+\.\d+)", text)
    assert m and m.group(1) == m.group(2), text
    body = page.locator('[data-testid="stMain"]').inner_text()
    assert "Backward: dLoss/d(this output)" in body
    screenshot(page, "step-conv-pixel")
    assert exceptions(page) == []
