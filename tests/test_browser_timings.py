"""The Timings page in a real Chromium (Playwright) against `streamlit run`.

What AppTest cannot see: the page loading as a fresh server's very first request (a deep
link, Streamlit's legacy pages/ mode) with a real results file's charts, and its live
fragment showing a running benchmark's progress until Stop ends it. Screenshots go to
test-output/screenshots/ for a person to look at.

The server runs on 127.0.0.1 with its own artifacts folder (FMNIST_ARTIFACTS), prepared
with one real results file of this machine.
"""
from __future__ import annotations

import pytest

from browser_util import (browser, browser_marks, exceptions, open_page, page,  # noqa: F401 (fixtures)
                          screenshot, streamlit_server, wait_idle, wait_charts)

pytestmark = browser_marks()
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, ds):
    """An artifacts folder with one results file of this machine, made here."""
    from fmnist_core import bench
    base = tmp_path_factory.mktemp("artifacts_timings")
    cfg = bench.BenchConfig.quick(impls=("pytorch", "onnxruntime", "manual-numpy", "dataloader"), max_run_s=30.0,
                                  headline_rounds=3, min_repeats=2, max_repeats=3, row_budget_s=0.05)
    res = bench.run_benchmark(bench.resolve_model(preset_name="mlp-seed000"), ds, cfg)
    bench.save_results(res, bench_dir=base / "benchmarks")
    return base


@pytest.fixture(scope="module")
def server(artifacts):
    import shutil

    from fmnist_core.bench.job import job_dir
    with streamlit_server(artifacts) as url:
        yield url
    shutil.rmtree(job_dir(artifacts / "benchmarks"), ignore_errors=True)  # the benchmark's job slot


def test_timings_shows_results_and_a_running_benchmark(server, page):
    # a deep link first, on a server nobody has visited yet (Streamlit's legacy pages/ mode)
    open_page(page, server, "timings")
    page.locator("h1").first.wait_for()
    assert exceptions(page) == []
    assert page.get_by_text("Page not found").count() == 0
    page.get_by_text("Why the numbers differ").wait_for()
    page.locator('[data-testid="stPlotlyChart"]').nth(1).wait_for()  # time and GFLOP/s at least
    # the precision axis and ONNX Runtime: the goals, and bf16 said why where it was not measured
    page.get_by_text("The speed goals").wait_for()
    page.get_by_text("fp32 PyTorch within 1.1x of ONNX Runtime's time").wait_for()
    from fmnist_core.device import cpu_has_fast_bf16
    if not cpu_has_fast_bf16():
        page.get_by_text("PyTorch nn.Module bf16").first.wait_for()
        assert page.get_by_text("no AMX or AVX512-BF16 on this CPU").first.is_visible()
    page.get_by_text("Same answers?").click()
    page.get_by_text("A faster row that disagrees computes something else").wait_for()
    screenshot(page, "page-timings")
    page.get_by_role("button", name="Run").click()
    # the live fragment: a progress bar while the benchmark process runs
    page.locator('[data-testid="stMain"] [data-testid="stProgress"]').first.wait_for(timeout=30_000)
    assert page.get_by_role("button", name="Run").is_disabled()
    screenshot(page, "timings-running")
    page.get_by_role("button", name="Stop the benchmark").click()
    page.get_by_text("stopped before it finished").wait_for(timeout=30_000)
    wait_idle(page)
    assert exceptions(page) == []
    assert page.get_by_role("button", name="Run").is_enabled()


def test_timings_axes_and_missing_bars_say_what_they_show(server, page):
    """A quick run's headline has no DataLoader bar and says why; a log axis (the DataLoader's
    one image next to PyTorch's) is ticked at 1-2-5 with numbers, not '9 8 7 6 5 4 3 2'."""
    import re
    page.set_viewport_size({"width": 1400, "height": 1000})
    open_page(page, server, "timings")
    if page.locator('[data-testid="stPlotlyChart"]').count() >= 3:  # the headline ran (a busy machine may skip it)
        assert page.get_by_text("No bar for DataLoader + PIL: not timed over the 10,000 test images "
                                "in a quick run").is_visible()
    # one image: the DataLoader's per-image Python next to a few microseconds of PyTorch
    page.locator('[data-testid="stMain"]').get_by_text("one image (latency)", exact=True).click()
    wait_idle(page)
    wait_charts(page)
    chart = page.evaluate("""() => { const d = Array.from(document.querySelectorAll('.js-plotly-plot'))
        .find(p => (p._fullLayout.title.text || '').startsWith('Time'));
        return {type: d._fullLayout.yaxis.type, values: d._fullData.flatMap(t => Array.from(t.y)),
                ticks: Array.from(d.querySelectorAll('.ytick text')).map(t => t.textContent)}; }""")
    spread = max(chart["values"]) / min(chart["values"])
    assert chart["type"] == ("log" if spread > 20 else "linear"), chart
    if chart["type"] == "log":
        assert 2 <= len(chart["ticks"]) <= 8, chart["ticks"]
        assert all(re.fullmatch(r"[125][0,]*|0\.0*[125]", t) for t in chart["ticks"]), chart["ticks"]
    screenshot(page, "timings-latency")
    assert exceptions(page) == []
