"""Home, Train and Results in a real Chromium (Playwright) against `streamlit run app.py`.

What AppTest cannot see: the pages as a browser renders them (no exception box, and only
pages in the sidebar, including a deep link as the very first request of a fresh server),
the run a dead process left behind marked at start-up, a training run launched from the
Train page whose live fragment shows it finish with its curves, and a click on a
confusion-matrix cell on the Results page. Screenshots of every page go to
test-output/screenshots/ for a person to look at.

Runs against an isolated artifacts folder (FMNIST_ARTIFACTS), on 127.0.0.1 only.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from browser_util import (using_store, browser, browser_marks, exceptions, open_page, page, screenshot,  # noqa: F401 (fixtures)
                          streamlit_server, wait_idle, open_tab, rerun_after, wait_settled)

pytestmark = browser_marks()
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")

PAGES = {"home": "", "train": "train", "results": "results"}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """An isolated artifacts folder holding one orphan: a run 'running' in a dead process."""
    from fmnist_core import runs
    from fmnist_core.spec import run_spec
    from fmnist_core.models import MLPConfig
    from fmnist_core.train import TrainConfig
    root = tmp_path_factory.mktemp("artifacts")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with using_store(root):
        orphan = runs.create_run(run_spec(MLPConfig(hidden=(8,)), TrainConfig(epochs=1)), label="orphan")
        runs.set_status(orphan, "running", pid=dead.pid, host=runs.HOST, message="epoch 1/1")
    return root


@pytest.fixture(scope="module")
def server(artifacts):
    with streamlit_server(artifacts) as url:
        yield url



def commit(page, label: str, value: str) -> None:
    """Type into a text or number input and commit it (Enter), then wait for the rerun."""
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    rerun_after(page, lambda: box.press("Enter"))
    wait_idle(page)


def test_every_page_loads_without_an_exception(server, page, artifacts):
    # a deep link first, on a server nobody has visited yet: the case where Streamlit's
    # legacy pages/ discovery would run pages/results.py instead of app.py
    for name in ("results", "train", "home"):
        open_page(page, server, PAGES[name])
        page.locator("h1").first.wait_for()
        assert exceptions(page) == [], name
        assert page.get_by_text("Page not found").count() == 0, name
        nav = page.locator('[data-testid="stSidebarNav"]').inner_text().lower()
        assert "common" not in nav and "model picker" not in nav, nav  # ui/ helpers are not pages
        screenshot(page, f"page-{name}")
    assert page.locator("h1").first.inner_text().startswith("Fashion-MNIST Workbench")
    # the server marked the run its dead process left behind, once, at start-up
    from fmnist_core import runs
    with using_store(artifacts):
        assert [r["status"] for r in runs.list_runs()] == ["interrupted"]


def in_view(page, locator) -> bool:
    """Is this element inside the window, as it is scrolled now?"""
    box = locator.bounding_box()
    return box is not None and 0 <= box["y"] and box["y"] + box["height"] <= page.viewport_size["height"]


def test_tiny_training_run_finishes_with_curves_then_shows_results(server, page):
    page.set_viewport_size({"width": 1400, "height": 1000})  # the laptop of issue 14
    # the page opens on the demo CNN; a settings link starts from the seed-000 MLP
    open_page(page, server, PAGES["train"] + "?start=mlp-seed000")
    page.get_by_label("Hidden layer widths", exact=True).wait_for()
    commit(page, "Hidden layer widths", "32")
    commit(page, "Epochs", "2")
    commit(page, "Training images (0 = all)", "3000")
    page.get_by_text("Trainable parameters").wait_for()
    assert exceptions(page) == []
    launch = page.get_by_role("button", name="Launch training")
    launch.scroll_into_view_if_needed()
    launch.click()
    # the form folds away and the run just launched is in view at once, with its place in line
    page.get_by_label("Hidden layer widths", exact=True).wait_for(state="hidden", timeout=10_000)
    bar = page.locator('[data-testid="stMain"] [data-testid="stProgress"]').first
    bar.wait_for(timeout=10_000)
    wait_settled(page, '[data-testid="stMain"] [data-testid="stProgress"]')  # the expander has folded
    assert in_view(page, bar), bar.bounding_box()
    said = bar.inner_text()
    assert "first in line" in said or "position 1" in said or "running" in said, said
    screenshot(page, "train-just-launched")
    # while it is queued or running the live panel offers Stop and a progress bar
    page.get_by_role("button", name="Stop", exact=True).wait_for(timeout=30_000)
    assert in_view(page, page.get_by_role("button", name="Stop", exact=True))
    screenshot(page, "train-live-run")

    # the live fragment polls the run folder until the run ends, then the page settles
    page.get_by_text("Compare it with others on the Results page").wait_for(timeout=150_000)
    wait_idle(page)
    assert exceptions(page) == []
    charts = page.locator('[data-testid="stPlotlyChart"]')
    assert charts.count() >= 2
    # two epochs: loss and accuracy, each with a training and a validation line
    assert page.locator(".js-plotly-plot .scatterlayer .trace").count() >= 4
    page.get_by_text("Test accuracy").first.wait_for()
    screenshot(page, "train-finished-run")

    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Results").click()
    wait_idle(page)
    page.get_by_text("Look closer at").wait_for()
    assert exceptions(page) == []
    # click the Trouser/Trouser cell of the confusion matrix: its test images appear
    plot = page.locator('[data-testid="stPlotlyChart"]').nth(2)
    plot.scroll_into_view_if_needed()
    area = plot.locator(".nsewdrag").first.bounding_box()
    page.mouse.click(area["x"] + 1.5 * area["width"] / 10, area["y"] + 1.5 * area["height"] / 10)
    page.get_by_text("test images of Trouser correctly classified").wait_for(timeout=30_000)
    wait_idle(page)
    assert exceptions(page) == []
    screenshot(page, "results-after-run")
    for tab in ("Per class", "Mistakes", "Downloads & delete"):
        open_tab(page, tab)
        assert exceptions(page) == [], tab
        screenshot(page, f"results-tab-{tab.split()[0].lower()}")
    page.get_by_role("button", name="Confusion matrix (PNG)").wait_for()
