"""'Fool the model' in a real Chromium (Playwright) against `streamlit run`, on a real test
image and the shipped model the Predict page opens with: FGSM at the epsilon the smallest-
epsilon search finds changes the prediction, shown on the page with the perturbed image and
the perturbation, and no exception box. Screenshots go to test-output/screenshots/."""
from __future__ import annotations

import pytest

from conftest import skip_unless_ci

from browser_util import (ROOT, browser, browser_marks, exceptions, open_page, page,  # noqa: F401 (fixtures)
                          screenshot, streamlit_server, wait_idle)
from test_browser_predict import choose, metric

pytestmark = browser_marks()
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")

REAL_CNN = ROOT / "artifacts" / "models" / "cnn.pt"
INDEX = 0  # test image #0, an ankle boot


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not REAL_CNN.is_file():
        skip_unless_ci("the shipped CNN is not there (make models)")
    with streamlit_server(tmp_path_factory.mktemp("artifacts_fool")) as url:
        yield url


def test_fgsm_flips_a_test_image_on_the_predict_page(server, page, ds):
    from fmnist_core import adversarial
    from fmnist_core.models import load_model
    open_page(page, server, "predict")
    choose(page, "Test image")
    page.get_by_text("After the attack").wait_for(timeout=60_000)
    wait_idle(page)
    assert exceptions(page) == []
    said = metric(page, "PyTorch says")
    assert said and page.get_by_text("the perturbation: red brighter, blue darker").is_visible()
    page.get_by_text("perturbed:").first.wait_for()

    page.get_by_role("button", name="Find the smallest ε that changes the answer (FGSM)").click()
    page.get_by_text("The smallest ε that makes FGSM change the answer").wait_for(timeout=60_000)
    wait_idle(page)
    page.get_by_role("button", name="Try it").click()
    page.get_by_text("FGSM with ε =").wait_for(timeout=60_000)
    wait_idle(page)
    assert exceptions(page) == []
    after = metric(page, "After the attack")
    assert after and after != said
    # what the page shows is what the core computes on the shipped CNN for that image
    shown = page.locator('[data-testid="stMetric"]').filter(has_text="ε = ").first.inner_text()
    level = int(shown.split("ε = ")[1].split("/")[0])
    r = adversarial.attack_one(load_model(REAL_CNN), ds.x_test[INDEX] / 255.0, "FGSM", level / 255)
    assert r["flipped"] and r["after"]["label"] == after and r["before"]["label"] == said
    assert not adversarial.attack_one(load_model(REAL_CNN), ds.x_test[INDEX] / 255.0, "FGSM",
                                      (level - 1) / 255)["flipped"]
    screenshot(page, "predict-fool-fgsm")
