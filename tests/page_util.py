"""Helpers for the page tests (streamlit.testing.v1.AppTest): one page with the app's sidebar,
its texts, and the fixtures several page modules share (import the fixtures by name).

Every test gets its own empty run store (conftest's `store` / `runs_dir`: SQLite in a temp
dir, FMNIST_TRACKING_URI set), so nothing lands in artifacts/. Pages run in this process and
the training processes they launch inherit the environment, so both use that store.
When artifacts/models/cnn.pt is not there (it is trained separately), a small MLP trained
here on real images stands in as the shipped model, so no test depends on it.
"""
from __future__ import annotations

import re
import shutil
import time

import pytest
from streamlit.testing.v1 import AppTest

from fmnist_core import runs

from conftest import ROOT

TIMEOUT = 120  # the first run imports torch and loads the dataset on a busy 2-core machine
REAL_CNN = ROOT / "artifacts" / "models" / "cnn.pt"


def page_app(name: str) -> AppTest:
    """One page with the app's sidebar, as app.py draws it."""
    script = ("from ui import common\n"
              f"from pages import {name}\n"
              "common.sidebar()\n"
              f"{name}.page()\n")
    return AppTest.from_string(script, default_timeout=TIMEOUT)


def unescape(markdown: str) -> str:
    """What a reader sees of text escaped with views.shared.plain_text (backslashes dropped)."""
    return re.sub(r"\\(.)", r"\1", str(markdown))


def texts(at: AppTest) -> str:
    """All markdown, captions, alerts and metrics of the page, as one string (escaped plain
    text as the reader sees it)."""
    parts = [e.value for e in (*at.markdown, *at.caption, *at.info, *at.success, *at.warning)]
    parts += [unescape(e.value) for e in at.error]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    return "\n".join(str(p) for p in parts)


def captions(at: AppTest) -> list[str]:
    """The captions of every st.image, in page order."""
    return [c for im in at.image for c in im.captions]


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def rerun_until(at: AppTest, pred, timeout: float = 15.0):
    """Rerun the page until pred(at) holds, as a student waits for the next refresh: the run
    list the pages read is at most a second old (ui.common.run_list)."""
    deadline = time.time() + timeout
    while True:
        at.run()
        if pred(at) or time.time() > deadline:
            return at
        time.sleep(0.5)


def wait_for_status(run_id, statuses=("finished",), timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = runs.load_run(run_id, history=False)["status"]
        if st not in runs.ACTIVE:
            log = runs.work_dir(run_id) / "log.txt"
            assert st in statuses, (st, log.read_text()[-2000:] if log.is_file() else "")
            return
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} still active after {timeout} s")


# --- fixtures ---------------------------------------------------------------------------------

@pytest.fixture
def finished_run(runs_dir):
    """A tiny MLP run in the test's run store, trained to the end on 2,000 real images; its id."""
    from fmnist_core.execute import execute_run
    from fmnist_core.spec import run_spec
    from fmnist_core.models import MLPConfig
    from fmnist_core.train import TrainConfig
    spec = run_spec(MLPConfig(hidden=(16,)), TrainConfig(epochs=1, batch_size=128, device="cpu"),
                    train_limit=2000)
    d = runs.create_run(spec, label="tiny")
    assert execute_run(d)["status"] == "finished"
    return d


@pytest.fixture
def shipped_mlp(finished_run, tmp_path, monkeypatch):
    """The finished run's checkpoint as the only shipped model (mlp.pt); its path."""
    from fmnist_core.views import shared
    models = tmp_path / "models"
    models.mkdir()
    shutil.copyfile(runs.load_run(finished_run)["checkpoint"], models / "mlp.pt")  # stands in for a shipped model
    monkeypatch.setattr(shared, "SHIPPED_DIR", models)
    return models / "mlp.pt"


@pytest.fixture(scope="session")
def stand_in(tmp_path_factory):
    """A folder holding mlp.pt: a small MLP trained here on 6,000 real training images."""
    from fmnist_core.data import load
    from fmnist_core.models import MLPConfig, save_checkpoint
    from fmnist_core.train import TrainConfig, train
    base = tmp_path_factory.mktemp("stand_in")
    res = train(MLPConfig(hidden=(64,)), TrainConfig(epochs=2, batch_size=64, device="cpu"), load(),
                train_limit=6000)
    assert res.status == "finished"
    models = base / "models"
    models.mkdir()
    save_checkpoint(models / "mlp.pt", res.model, metrics={"best_val_accuracy": res.best_val_accuracy})
    return models


@pytest.fixture
def model(runs_dir, stand_in, monkeypatch):
    """The model the pages choose by default: the shipped CNN, or the stand-in MLP."""
    from fmnist_core.views import shared
    if REAL_CNN.is_file():
        return {"key": "shipped:cnn", "path": REAL_CNN, "real_cnn": True}
    monkeypatch.setattr(shared, "SHIPPED_DIR", stand_in)
    return {"key": "shipped:mlp", "path": stand_in / "mlp.pt", "real_cnn": False}


@pytest.fixture
def no_models(runs_dir, tmp_path, monkeypatch):
    from fmnist_core.views import shared
    monkeypatch.setattr(shared, "SHIPPED_DIR", tmp_path / "no-models-here")
