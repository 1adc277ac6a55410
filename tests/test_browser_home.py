"""The Home page in a real Chromium (Playwright) at 1400 x 1000, against `streamlit run`.

What AppTest cannot see: the URLs. Typing the path Home declares, /home, as a fresh server's
very first request (Streamlit's legacy pages/ mode) shows Home, not "Page not found"; the root
/ hands over to it; the sidebar's Home link and the address bar agree; and the "Start here"
links lead to the pages they name. Screenshots go to test-output/screenshots/.
"""
from __future__ import annotations

import pytest

from browser_util import (browser, browser_marks, exceptions, open_page, page, screenshot,  # noqa: F401 (fixtures)
                          streamlit_server, wait_idle)

pytestmark = browser_marks()
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
VIEWPORT_HEIGHT = 1000  # the 1400x1000 window of issue 14


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with streamlit_server(tmp_path_factory.mktemp("artifacts_home")) as url:
        yield url


def home_shown(page) -> None:
    assert page.get_by_text("Page not found").count() == 0
    assert page.locator("h1").first.inner_text().startswith("Fashion-MNIST Workbench")
    assert exceptions(page) == []


def test_home_answers_at_home_and_at_the_root(server, page):
    open_page(page, server, "home")  # the first request this server gets
    home_shown(page)
    assert page.url.rstrip("/").endswith("/home")
    open_page(page, server, "")
    page.wait_for_url("**/home")  # "/" hands over to Home: one address for one page
    home_shown(page)
    nav = page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Home / Data")
    assert nav.get_attribute("href").rstrip("/").endswith("/home")


def test_start_here_leads_to_train_results_and_predict(server, page):
    open_page(page, server, "home")
    page.get_by_text("Start here").first.wait_for()
    links = page.locator('[data-testid="stMain"] [data-testid="stPageLink"]')
    assert [t.split()[-1] for t in links.all_inner_texts()] == ["Train", "Results", "Predict"]  # (icon, label)
    for link in links.all():  # the next step is in the first screen, above the data
        box = link.bounding_box()
        assert box["y"] + box["height"] < 1000, box
    screenshot(page, "home-start-here")
    for label, title in (("Train", "Train a model"), ("Results", "Results"), ("Predict", "Predict")):
        open_page(page, server, "home")
        page.locator('[data-testid="stMain"] [data-testid="stPageLink"]').get_by_text(label, exact=True).click()
        wait_idle(page)
        page.locator("h1").filter(has_text=title).first.wait_for()
        assert exceptions(page) == [], label
