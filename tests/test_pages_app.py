"""app.py under AppTest: it routes to the Home page, and every page gets the sidebar with the
data source, the devices and the job queue (positions of waiting runs included); pages/ holds
only pages, each routed by app.py."""
from __future__ import annotations

import importlib
import os
import time

from streamlit.testing.v1 import AppTest

from fmnist_core import runs
from fmnist_core.spec import run_spec
from fmnist_core.models import MLPConfig
from fmnist_core.train import TrainConfig

from conftest import ROOT
from page_util import TIMEOUT, page_app


def test_app_routes_to_home_with_sidebar(runs_dir):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert at.title[0].value == "Fashion-MNIST Workbench"
    # a laptop (no teacher password): the single user is the teacher and sets the queue
    assert at.sidebar.number_input(key="cls_max_concurrent").value == 1
    side = "\n".join(c.value for c in at.sidebar.caption)
    assert "60,000 training" in side and "cpu" in side
    assert "No training running" in side


def test_sidebar_shows_the_queue_with_positions(runs_dir):
    spec = run_spec(MLPConfig(hidden=(8,)), TrainConfig(epochs=1))
    first = runs.create_run(spec, label="first", owner="ada")
    runs.set_status(first, "running", pid=os.getpid(), host=runs.HOST, progress=0.5)
    for label in ("second", "third"):
        d = runs.create_run(spec, label=label, owner="bo")
        runs.set_status(d, "queued", pid=os.getpid(), host=runs.HOST)
        time.sleep(0.01)  # distinct creation times: the queue is first come, first served
    at = page_app("train").run()
    assert not at.exception
    side = "\n".join(c.value for c in at.sidebar.caption)
    assert "#1 in line" in side and "#2 in line" in side
    assert "in line**: bo · MLP 784-8-10" in side  # labelled by owner and model
    assert "No training running" not in side


def test_pages_folder_holds_only_pages():
    # Streamlit lists every module of pages/ as a page on a fresh server's first visit
    from ui import nav
    routed = [name for name, _, _ in nav.PAGES]
    for f in sorted((ROOT / "pages").glob("*.py")):
        if f.name == "__init__.py":
            continue
        module = importlib.import_module(f"pages.{f.stem}")
        assert callable(getattr(module, "page", None)), f"{f.name} is not a page: no page()"
        assert f.stem in routed, f"ui/nav.py does not declare {f.name}"
        assert f.read_text().rstrip().endswith("common.run_app()"), f"{f.name} lacks the run_app lines"


def test_the_teacher_unlock_is_rate_limited_in_the_sidebar(runs_dir, monkeypatch):
    """Wrong passwords typed in the sidebar: five are checked, then the browser is locked out and
    told how long, and even the right password waits (before: 50 tries in 0.4 s, no lockout)."""
    from fmnist_core import ratelimit, roles
    monkeypatch.setenv("FMNIST_TEACHER_PASSWORD", "correct horse battery")
    monkeypatch.setattr(roles, "UNLOCK_RATE", ratelimit.RateLimiter(100, 100))  # the lockout is under test
    monkeypatch.setattr(roles, "UNLOCK_BROWSER_LOCKOUT", ratelimit.Lockout(5, 600, 300))
    at = page_app("home").run()
    for i in range(5):
        at.sidebar.text_input(key="me_password").input(f"guess {i}").run()
        assert "not the teacher's password" in at.sidebar.error[0].value
    at.sidebar.text_input(key="me_password").input("correct horse battery").run()
    assert not at.exception
    assert "Too many wrong tries: try the teacher password again in 5 minutes." in at.sidebar.error[0].value
    assert not at.session_state["me_teacher"]
    assert at.session_state["me_password"] == ""  # never kept, refused or not
