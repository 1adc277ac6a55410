"""Helpers for the browser tests: `streamlit run app.py` on a free local port (127.0.0.1
only) with its own artifacts folder, and Debian's Chromium driven by Playwright.

Playwright's own browser download is not available here, so Chromium is the system one
(`executable_path=/usr/bin/chromium`) with background networking switched off.
The server gets FMNIST_ARTIFACTS pointing at a temporary folder, so runs launched from
the browser never land in the real artifacts/runs; the dataset cache is linked in to
avoid re-parsing the IDX files.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
SCREENSHOTS = ROOT / "test-output" / "screenshots"


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found: install Debian's chromium (make test does)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    return None


def browser_marks() -> list:
    """`pytestmark` of a browser module: skipped where no browser can run, except under CI=true,
    where a browser test that cannot run fails the suite (a green CI must mean they ran)."""
    import pytest
    why = browser_missing()
    if why and os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true but the browser tests cannot run: {why}", pytrace=False)
    return [pytest.mark.browser, pytest.mark.skipif(why is not None, reason=f"{why}: browser tests skipped")]


@contextlib.contextmanager
def using_store(artifacts: Path):
    """Point this process's run store at the one a server started with FMNIST_ARTIFACTS=artifacts
    uses (its embedded store, artifacts/mlflow.db), to prepare runs for it."""
    from fmnist_core import runs
    old_uri, old_artifacts = os.environ.get("FMNIST_TRACKING_URI"), runs.ARTIFACTS
    os.environ["FMNIST_TRACKING_URI"] = f"sqlite:///{artifacts / 'mlflow.db'}"
    runs.ARTIFACTS = artifacts
    try:
        yield runs.store()
    finally:
        runs.ARTIFACTS = old_artifacts
        if old_uri is None:
            os.environ.pop("FMNIST_TRACKING_URI", None)
        else:
            os.environ["FMNIST_TRACKING_URI"] = old_uri


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str, ca: Path | None = None) -> bool:
    import ssl
    ctx = ssl.create_default_context(cafile=str(ca)) if ca else None
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2, context=ctx) as r:
            return r.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def streamlit_server(artifacts: Path, timeout: float = 120.0, env: dict | None = None,
                     tls: Path | None = None):
    """Yield the base URL of a fresh `streamlit run app.py`; stop it (and only it) afterwards.
    `env`: more environment for the server (e.g. FMNIST_TEACHER_PASSWORD for a class server);
    `tls`: a folder with cert.pem and key.pem (scripts/tls_cert.sh): serve https, as `make class`."""
    artifacts.mkdir(parents=True, exist_ok=True)
    real_data = ROOT / "artifacts" / "data"
    if real_data.is_dir() and not (artifacts / "data").exists():
        (artifacts / "data").symlink_to(real_data, target_is_directory=True)
    port = free_port()
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    tls_args = (["--server.sslCertFile", str(tls / "cert.pem"), "--server.sslKeyFile", str(tls / "key.pem")]
                if tls else [])
    log = open(artifacts / "streamlit.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none", *tls_args],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env={**os.environ, "FMNIST_ARTIFACTS": str(artifacts), "PYTHONUNBUFFERED": "1", **(env or {})},
        start_new_session=True)
    try:
        deadline = time.time() + timeout
        while not _healthy(url, tls / "cert.pem" if tls else None):
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {proc.returncode}: "
                                   f"{(artifacts / 'streamlit.log').read_text()[-2000:]}")
            if time.time() > deadline:
                raise RuntimeError(f"streamlit did not become healthy within {timeout:.0f} s")
            time.sleep(0.3)
        yield url
    finally:
        # the server runs in its own session: signal exactly that group (trainings it
        # launched run in sessions of their own and are not touched)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def launch_browser(playwright):
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def wait_idle(page, timeout: float = 60.0) -> None:
    """Wait until the app has connected and its script run is over."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout * 1000)
    page.wait_for_function(
        """() => {
            const app = document.querySelector('[data-testid="stApp"]');
            return app && app.getAttribute('data-test-script-state') === 'notRunning'
                   && document.querySelectorAll('[data-testid="stSkeleton"]').length === 0;
        }""", timeout=timeout * 1000)


def rerun_after(page, action, timeout: float = 60.0) -> None:
    """Do `action` (a widget change) and wait until the rerun it starts has ended. A watcher set
    up before the action notes the script state turning 'running', so there is no fixed pause
    for the rerun to begin (wait_idle alone may return before it has). A rerun that began and
    ended before the observer's callback ran counts too: the callback gets every change, and a
    change *from* 'running' (its old value) means one ran (it read only the state at callback
    time once, and waited 60 s for a rerun already over: CI, test_browser_predict_why)."""
    page.evaluate("""() => {
        window.__rerunSeen = false;
        const app = document.querySelector('[data-testid="stApp"]');
        const state = 'data-test-script-state';
        window.__rerunWatch = new MutationObserver(records => {
            if (app.getAttribute(state) === 'running' || records.some(r => r.oldValue === 'running'))
                window.__rerunSeen = true; });
        window.__rerunWatch.observe(app, {attributes: true, attributeOldValue: true, attributeFilter: [state]});
    }""")
    action()
    page.wait_for_function("() => window.__rerunSeen === true", timeout=timeout * 1000)
    page.evaluate("() => window.__rerunWatch.disconnect()")
    wait_idle(page, timeout)


def wait_charts(page, timeout: float = 60.0) -> None:
    """Every Plotly chart on the page has drawn: its layout computed and its SVG in place
    (Plotly draws after Streamlit's script run is over)."""
    # charts in a tab or an expander not shown are drawn when shown: only the visible ones count
    page.wait_for_function("""() => [...document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot')]
        .filter(p => p.offsetParent !== null && p.getClientRects().length > 0)
        .every(p => p._fullLayout && p.querySelector('.main-svg'))""", timeout=timeout * 1000)


def wait_settled(page, selector: str, timeout: float = 30.0) -> None:
    """The first element matching `selector` has stopped moving (an expander folding, a
    re-layout): its box is the same over five animation frames."""
    page.wait_for_function("""async (sel) => {
        const el = document.querySelector(sel);
        if (!el) return false;
        const box = () => JSON.stringify(el.getBoundingClientRect());
        const first = box();
        for (let i = 0; i < 5; i++) await new Promise(r => requestAnimationFrame(r));
        return first === box();
    }""", arg=selector, timeout=timeout * 1000)


def open_tab(page, name: str, timeout: float = 60.0) -> None:
    """Click a tab and wait until it is the selected one and the page is idle."""
    page.get_by_role("tab", name=name).click()
    page.get_by_role("tab", name=name, selected=True).wait_for(timeout=timeout * 1000)
    wait_idle(page, timeout)


def exceptions(page) -> list[str]:
    """Texts of the exception boxes Streamlit shows (empty when the page is healthy)."""
    return [e.inner_text()[:500] for e in page.locator('[data-testid="stException"]').all()]


def screenshot(page, name: str) -> Path:
    """The whole page: Streamlit scrolls inside its main block, so the viewport is grown to fit."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    size = page.viewport_size
    height = page.evaluate("""() => {
        const m = document.querySelector('[data-testid="stMain"]');
        return m ? m.scrollHeight : document.body.scrollHeight; }""")
    page.set_viewport_size({"width": size["width"], "height": min(max(height, size["height"]), 8000)})
    wait_charts(page)  # charts re-layout to the new size
    wait_settled(page, '[data-testid="stMain"]')
    page.screenshot(path=str(path))
    page.set_viewport_size(size)
    return path


# --- fixtures shared by the browser test modules (imported there by name) -------------------

import pytest  # noqa: E402


@pytest.fixture(scope="module")
def browser():
    from playwright import sync_api
    with sync_api.sync_playwright() as p:
        b = launch_browser(p)
        yield b
        b.close()


@pytest.fixture
def page(browser, request):
    """A fresh context and page; a module sets VIEWPORT_HEIGHT to look at another window size."""
    ctx = browser.new_context(viewport={"width": 1400, "height": getattr(request.module, "VIEWPORT_HEIGHT", 900)})
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    ctx.close()


def person(browser, server: str, token: str, name: str, width: int = 1400, height: int = 1000):
    """(context, page) of one member of a class: a browser context of its own, carrying the
    identity cookies a real browser keeps (its secret token and the name typed in)."""
    ctx = browser.new_context(viewport={"width": width, "height": height})
    ctx.add_cookies([{"name": "fmnist_token", "value": token, "url": server},
                     {"name": "fmnist_name", "value": name, "url": server}])
    page = ctx.new_page()
    page.set_default_timeout(90_000)
    return ctx, page


@pytest.fixture
def people(browser, server):
    """open_as(token, name, width, height) -> a page of its own person; all closed afterwards.
    (A module using it provides the `server` fixture.)"""
    made = []

    def open_as(token: str, name: str, width: int = 1400, height: int = 1000):
        ctx, page = person(browser, server, token, name, width, height)
        made.append(ctx)
        return page
    yield open_as
    for c in made:
        c.close()


def unlock_teacher(page, password: str) -> None:
    """Teacher mode on this page's browser, from the sidebar's Teacher box."""
    page.get_by_text("Teacher", exact=True).click()
    box = page.get_by_label("Teacher password", exact=True)
    box.fill(password)
    box.press("Enter")
    page.get_by_text("teacher mode", exact=True).wait_for()
    wait_idle(page)


def open_page(page, server, path: str) -> None:
    page.goto(f"{server}/{path}")
    wait_idle(page, timeout=90)

