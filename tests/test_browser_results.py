"""The Results page in a real Chromium (Playwright) at 1400 x 1000, against `streamlit run`.

What AppTest cannot see: the charts as Plotly draws them (the axis ranges and tick labels
it computed, where the legend and the axis title land) and which columns of the comparison
table a 1400 px window shows without scrolling sideways (the table is a canvas; its hidden
accessibility table holds only the columns in view). Screenshots go to test-output/screenshots/.

The server runs on 127.0.0.1 with its own artifacts folder, prepared with one real finished
run (1 epoch: the case that drew an accuracy axis from 0 to 150%) and runs with made-up
histories: two close epochs (the case that repeated "84%, 84%, 85%"), one that diverged to a
loss of 10,000, and enough long-named runs to fill a legend.
"""
from __future__ import annotations

import pytest

from conftest import skip_unless_ci

from browser_util import (browser, browser_marks, exceptions, open_page, page, screenshot,  # noqa: F401 (fixtures)
                          streamlit_server, using_store, wait_idle, wait_charts)

pytestmark = browser_marks()
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
VIEWPORT_HEIGHT = 1000  # the 1400x1000 window of issue 14

MANY = ["Alexandrina Featherstonehaugh", "Bartholomew Cholmondeley", "Chidimma Okonkwo-Adeyemi",
        "Dagmar Wróblewska-Nowak", "Eleftheria Papadopoulou", "Fionnuala Ní Bhriain"]


def fake_run(label: str, owner: str, history: list[tuple], status: str = "finished", test: float | None = None):
    """A run in the store with this per-epoch history (train/val loss, train/val accuracy)."""
    from fmnist_core import runs
    from fmnist_core.spec import run_spec
    from fmnist_core.models import MLPConfig
    from fmnist_core.train import TrainConfig
    rid = runs.create_run(run_spec(MLPConfig(hidden=(32,)), TrainConfig(epochs=len(history))), label=label,
                          owner=owner)
    for epoch, (tl, vl, ta, va) in enumerate(history, 1):
        runs.log_epoch(rid, {"epoch": epoch, "train_loss": tl, "val_loss": vl, "train_accuracy": ta,
                             "val_accuracy": va})
    runs.set_status(rid, status, test_accuracy=test, epochs_run=len(history), message=status)
    return rid


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    from fmnist_core import runs
    from fmnist_core.execute import execute_run
    from fmnist_core.spec import run_spec
    from fmnist_core.models import MLPConfig
    from fmnist_core.train import TrainConfig
    base = tmp_path_factory.mktemp("artifacts_results")
    with using_store(base):
        for i, owner in enumerate(MANY):
            fake_run(f"many{i}", owner, [(0.7 - 0.05 * e, 0.72 - 0.04 * e, 0.75 + 0.02 * e + 0.01 * i,
                                          0.74 + 0.02 * e + 0.01 * i) for e in range(4)], test=0.8 + 0.01 * i)
        fake_run("diverged", "Zed", [(0.9, 0.8, 0.7, 0.71), (10_000.0, 9_500.0, 0.1, 0.1)], status="diverged")
        fake_run("close", "Yara", [(0.45, 0.44, 0.842, 0.845), (0.42, 0.43, 0.848, 0.851)], test=0.846)
        spec = run_spec(MLPConfig(hidden=(16,)), TrainConfig(epochs=1, batch_size=128, device="cpu"),
                        train_limit=2000)
        one = runs.create_run(spec, label="one-epoch", owner="Xavier")
        assert execute_run(one)["status"] == "finished"
    return base


@pytest.fixture(scope="module")
def server(artifacts):
    with streamlit_server(artifacts) as url:
        yield url


def compare(page, owners: list[str]) -> None:
    """Choose exactly these runs (by owner) in "Runs to compare"."""
    box = page.locator('[data-testid="stMultiSelect"]').first
    remove = box.locator('.react-aria-ComboBox button[aria-label^="Remove"]')
    while remove.count():
        left = remove.count()
        remove.first.click()
        page.wait_for_function("""([sel, n]) => document.querySelectorAll(sel).length < n""",
                               arg=['[data-testid="stMultiSelect"] .react-aria-ComboBox button[aria-label^="Remove"]', left])
        wait_idle(page)
    for owner in owners:
        box.locator("input").click()
        box.locator("input").fill(owner)
        page.locator('[role="option"]').filter(has_text=owner).first.click()
        page.keyboard.press("Escape")
        wait_idle(page)
    # the curves of the chosen runs are drawn by the rerun the choice starts: wait for them to be
    # there (wait_charts alone passes on a page with no chart yet, and wait_idle may come first)
    page.wait_for_function("() => document.querySelectorAll('[data-testid=\"stPlotlyChart\"] .js-plotly-plot').length >= 2",
                           timeout=60_000)
    wait_charts(page)


def charts(page) -> list[dict]:
    """Loss and accuracy charts as Plotly laid them out: y range and type, tick labels, and the
    boxes of the legend and the x axis title."""
    return page.evaluate("""() => Array.from(document.querySelectorAll('.js-plotly-plot')).slice(0, 2).map(d => {
        const box = el => { if (!el) return null; const r = el.getBoundingClientRect();
                            return {top: r.top, bottom: r.bottom, left: r.left, right: r.right}; };
        return {range: d._fullLayout.yaxis.range, type: d._fullLayout.yaxis.type,
                ticks: Array.from(d.querySelectorAll('.ytick text')).map(t => t.textContent),
                legend: box(d.querySelector('.legend')), xtitle: box(d.querySelector('.xtitle')),
                plot: box(d)}; })""")


def test_accuracy_axis_fits_one_epoch_and_never_repeats_a_label(server, page):
    open_page(page, server, "results")
    compare(page, ["Xavier"])
    loss, acc = charts(page)
    assert 0 <= acc["range"][0] and acc["range"][1] <= 1.0, acc["range"]  # was 0..150% for one epoch
    assert len(set(acc["ticks"])) == len(acc["ticks"]) >= 2, acc["ticks"]
    screenshot(page, "results-one-epoch")
    compare(page, ["Yara"])  # two epochs 0.842..0.851: the axis said 84%, 84%, 85%, 85%
    loss, acc = charts(page)
    assert len(set(acc["ticks"])) == len(acc["ticks"]) >= 3, acc["ticks"]
    assert all("." in t for t in acc["ticks"]), acc["ticks"]  # a decimal where the range needs one
    assert exceptions(page) == []


def test_a_diverged_run_puts_the_loss_on_a_log_scale(server, page):
    open_page(page, server, "results")
    compare(page, ["Zed", "Yara"])
    loss, acc = charts(page)
    assert loss["type"] == "log", loss
    page.get_by_text("Log scale: the run Zed").first.wait_for()
    assert len(loss["ticks"]) <= 8 and "1,000" in loss["ticks"], loss["ticks"]  # 1-2-5 steps, written out
    screenshot(page, "results-diverged")
    assert exceptions(page) == []


def test_many_runs_legend_clears_the_axis_title_and_test_accuracy_is_in_view(server, page):
    open_page(page, server, "results")
    compare(page, MANY)
    for chart in charts(page):
        legend, title = chart["legend"], chart["xtitle"]
        assert legend["top"] >= title["bottom"], (legend, title)  # under the axis title, not over it
        assert legend["bottom"] <= chart["plot"]["bottom"] + 1  # and inside the chart's own box
    # the comparison table at 1400 px: the run and its test accuracy without scrolling sideways
    table = page.locator('[data-testid="stDataFrame"]').first
    table.scroll_into_view_if_needed()
    headers = table.locator("th").all_inner_texts()
    assert headers[:3] == ["run", "test acc", "best val acc"], headers
    assert page.get_by_text("None", exact=True).count() == 0
    screenshot(page, "results-many-runs")
    assert exceptions(page) == []


def visible_heatmap_text(page) -> list[list[str]] | None:
    """The cell texts of the confusion matrix heatmap in view (the open tab's)."""
    return page.evaluate("""() => { const d = Array.from(document.querySelectorAll('.js-plotly-plot')).find(
        d => d.offsetParent !== null && d.data && d.data[0].type === 'heatmap'); return d ? d.data[0].text : null; }""")


def test_the_epoch_slider_of_the_shipped_cnn_changes_the_confusion_matrix(server, page):
    """The shipped CNN (the real artifacts/models/cnn.pt, from `make models`) carries its
    per-epoch history: curves on a first visit, and each epoch's confusion matrix of the test
    set it watched (it trained without a validation split, and the page says so)."""
    from conftest import ROOT
    import torch
    meta = torch.load(ROOT / "artifacts" / "models" / "cnn.pt", weights_only=True)["metrics"]
    if not any(h.get("watch_confusion") for h in meta.get("history") or []):
        skip_unless_ci("this cnn.pt predates per-epoch confusion matrices: run `make models`")
    slow = 300  # s: the shipped CNN is evaluated on the 10,000 test images, on a busy 2-core machine
    try:
        open_page(page, server, "results")
    except sync_api.TimeoutError:  # alone (-k), this test pays the server's cold start
        wait_idle(page, timeout=slow)
    box = page.locator('[data-testid="stMultiSelect"]').first  # add the shipped CNN to the comparison
    box.locator("input").click()
    box.locator("input").fill("shipped CNN")
    page.locator('[role="option"]').filter(has_text="shipped CNN").first.click()
    page.keyboard.press("Escape")
    wait_idle(page, timeout=slow)
    look = page.locator('[data-testid="stSelectbox"]').filter(has_text="Look closer at")
    look.locator("input").click()
    look.locator("input").fill("shipped CNN")
    page.locator('[role="option"]').filter(has_text="shipped CNN").first.click(timeout=slow * 1000)
    wait_idle(page, timeout=slow)
    wait_charts(page, timeout=slow)
    assert page.get_by_text("No per-epoch history stored").count() == 0
    loss, acc = charts(page)
    assert acc["range"][0] >= 0 and len(acc["ticks"]) >= 2  # the curves are drawn
    page.get_by_role("tab", name="How it learned").click()
    wait_idle(page, timeout=slow)
    wait_charts(page, timeout=slow)
    screenshot(page, "results-how-it-learned")
    md = page.locator('[data-testid="stMarkdownContainer"]')
    page.locator('[data-testid="stCaptionContainer"]').filter(
        has_text="scored the test set at each epoch end").first.wait_for(timeout=30_000)
    last = visible_heatmap_text(page)
    assert last is not None and len(last) == 10
    md.filter(has_text=f"Epoch {len(meta['history'])} · test (watched) accuracy").first.wait_for()
    slider = page.locator('[data-testid="stSlider"]').filter(has_text="Epoch").get_by_role("slider")
    slider.first.wait_for(timeout=30_000)
    slider.first.focus()  # a click may land on the sticky header: the keyboard moves it
    page.keyboard.press("Home")  # back to epoch 1
    acc1 = meta["history"][0]["watch_accuracy"]
    # the rerun the key starts, then the chart redrawn: waited on by what it shows, not by timing
    md.filter(has_text=f"Epoch 1 · test (watched) accuracy {acc1:.1%}").first.wait_for(timeout=slow * 1000)
    wait_idle(page, timeout=slow)
    wait_charts(page, timeout=slow)
    first = visible_heatmap_text(page)
    assert first is not None and first != last
    md.filter(has_text=f"Epoch 1 · test (watched) accuracy {acc1:.1%}").first.wait_for()
    screenshot(page, "results-epoch-slider")
    assert exceptions(page) == []
