"""The dashboard pages under streamlit.testing.v1.AppTest: each renders without an
exception, and its widgets drive the expected state (errors instead of launches for
impossible values, a tiny launch that creates and finishes a run, queue positions,
results of a finished run, deleting a run).

Every test gets its own runs folder (runs.RUNS_DIR patched to a temp dir), so nothing
lands in artifacts/runs. Pages run in this process, so the patch reaches them; the
training processes they launch get the run folder's absolute path.
"""
from __future__ import annotations

import os
import time

import pytest
from streamlit.testing.v1 import AppTest

from fmnist_core import runs
from fmnist_core.jobs import execute_run, run_spec
from fmnist_core.models import MLPConfig, build_model, count_parameters, preset
from fmnist_core.train import TrainConfig

from conftest import ROOT

TIMEOUT = 120  # the first run imports torch and loads the dataset on a busy 2-core machine



def page_app(name: str) -> AppTest:
    """One page with the app's sidebar, as app.py would draw it."""
    script = ("from ui import common\n"
              f"from pages import {name}\n"
              "common.sidebar()\n"
              f"{name}.page()\n")
    return AppTest.from_string(script, default_timeout=TIMEOUT)


def texts(at: AppTest) -> str:
    """All markdown, captions, alerts and metrics of the page, as one string."""
    parts = [e.value for e in (*at.markdown, *at.caption, *at.info, *at.success, *at.warning, *at.error)]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    return "\n".join(str(p) for p in parts)


def wait_for_status(run_dir, statuses=("finished",), timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = runs.load_run(run_dir)["status"]
        if st not in runs.ACTIVE:
            assert st in statuses, (st, (run_dir / "log.txt").read_text()[-2000:])
            return
        time.sleep(0.5)
    raise AssertionError(f"run {run_dir} still active after {timeout} s")


def test_app_routes_to_home_with_sidebar(runs_dir):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert at.title[0].value == "Fashion-MNIST Workbench"
    assert at.sidebar.number_input(key="max_concurrent").value == 1
    side = "\n".join(c.value for c in at.sidebar.caption)
    assert "60,000 training" in side and "cpu" in side
    assert "No training running" in side


def test_home_page_shows_classes_models_and_devices(runs_dir):
    at = page_app("home").run()
    assert not at.exception
    body = texts(at)
    for name in ("T-shirt/top", "Ankle boot", "Sneaker"):
        assert name in body
    assert "**cpu**" in body
    # the shipped models are either listed with their accuracy or reported as not trained yet
    assert at.dataframe or "not yet trained" in body
    seed = at.session_state["home_seed"]
    at.button(key="home_shuffle").click().run()
    assert not at.exception and at.session_state["home_seed"] == seed + 1


def test_preset_fills_the_form_and_counts_parameters(runs_dir):
    at = page_app("train").run()
    assert not at.exception
    assert at.metric[0].value == "101,770"  # mlp-seed000: 784-128-10
    at.selectbox(key="tr_start").select("cnn-seed002").run()
    assert not at.exception
    assert at.radio(key="tr_arch").value == "cnn"
    assert at.text_input(key="tr_channels").value == "32, 32, 64, 64, 128"
    expected = count_parameters(build_model(preset("cnn-seed002")["model"]))
    assert at.metric[0].value == f"{expected:,}"
    assert not at.error and not at.button(key="launch_btn").disabled


@pytest.mark.parametrize("key, value, message", [
    ("tr_lr", -0.01, "learning rate must be in (0, 10]"),
    ("tr_epochs", 0, "epochs must be 1..1000"),
    ("tr_dropout", 1.5, "dropout must be in [0, 1)"),
    ("tr_hidden", "128, many", "write whole numbers separated by commas"),
    ("tr_device", "mps", "Device mps is not available"),
])
def test_impossible_values_show_an_error_and_launch_nothing(runs_dir, key, value, message):
    at = page_app("train").run()
    widget = at.selectbox(key=key) if key == "tr_device" else (
        at.text_input(key=key) if key == "tr_hidden" else at.number_input(key=key))
    (widget.select(value) if key == "tr_device" else widget.set_value(value)).run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any(message in e for e in errors), errors
    assert at.button(key="launch_btn").disabled
    assert list(runs_dir.iterdir()) == []


def test_numpy_engine_trains_mlps_only(runs_dir):
    at = page_app("train").run()
    at.radio(key="tr_arch").set_value("cnn").run()
    at.radio(key="tr_engine").set_value("numpy").run()
    assert any("NumPy engine trains MLPs only" in e.value for e in at.error)
    assert at.button(key="launch_btn").disabled


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["torch", "numpy"])
def test_tiny_launch_creates_a_run_that_finishes_and_is_watched(runs_dir, engine):
    at = page_app("train").run()
    at.selectbox(key="tr_start").select("custom MLP").run()
    at.radio(key="tr_engine").set_value(engine).run()
    at.text_input(key="tr_hidden").input("16").run()
    at.number_input(key="tr_epochs").set_value(1).run()
    at.number_input(key="tr_train_limit").set_value(2000).run()
    assert not at.error
    at.button(key="launch_btn").click().run()
    assert not at.exception
    made = [d for d in runs_dir.iterdir() if d.is_dir() and not d.name.startswith(".")]
    assert len(made) == 1
    run = runs.load_run(made[0])
    assert run["config"]["model_config"]["hidden"] == [16]
    assert run["config"]["train_limit"] == 2000 and run["config"]["train_config"]["epochs"] == 1
    assert run["config"]["engine"] == engine
    assert at.session_state["tr_watch"] == made[0].name
    wait_for_status(made[0])
    at.run()
    assert not at.exception
    assert any("finished" in s.value for s in at.success)
    assert "Test accuracy" in texts(at)


def test_sidebar_shows_the_queue_with_positions(runs_dir):
    spec = run_spec(MLPConfig(hidden=(8,)), TrainConfig(epochs=1))
    first = runs.create_run(spec, label="first")
    runs.set_status(first, "running", pid=os.getpid(), progress=0.5)
    for label in ("second", "third"):
        d = runs.create_run(spec, label=label)
        runs.set_status(d, "queued", pid=os.getpid())
        time.sleep(0.01)  # distinct creation times: the queue is first come, first served
    at = page_app("train").run()
    assert not at.exception
    side = "\n".join(c.value for c in at.sidebar.caption)
    assert "#1 in line" in side and "#2 in line" in side
    assert "No training running" not in side


@pytest.fixture
def finished_run(runs_dir):
    spec = run_spec(MLPConfig(hidden=(16,)), TrainConfig(epochs=1, batch_size=128, device="cpu"),
                    train_limit=2000)
    d = runs.create_run(spec, label="tiny")
    assert execute_run(d)["status"] == "finished"
    return d


@pytest.mark.slow
def test_results_page_shows_and_deletes_a_run(finished_run):
    at = page_app("results").run()
    assert not at.exception
    key = f"run:{finished_run.name}"
    assert key in at.multiselect(key="res_sel").value
    assert at.dataframe  # the comparison table
    at.selectbox(key="res_true").select("Trouser").run()
    at.selectbox(key="res_pred").select("Trouser").run()
    assert not at.exception
    assert "test images of **Trouser** correctly classified" in texts(at)
    at.radio(key="res_cm_mode").set_value("row-normalised").run()
    assert not at.exception
    # delete: the button stays disabled until the confirmation is ticked
    assert at.button(key="res_del_btn").disabled
    at.checkbox(key=f"res_del_ok_{finished_run.name}").check().run()
    at.button(key="res_del_btn").click().run()
    assert not at.exception
    assert not finished_run.exists()
    assert key not in at.session_state["res_sel"]


def test_results_page_without_runs_says_what_to_do(runs_dir, monkeypatch):
    from fmnist_core.views import shared
    monkeypatch.setattr(shared, "SHIPPED_DIR", runs_dir / "no-models-here")
    at = page_app("results").run()
    assert not at.exception
    assert "Launch a run on the Train page" in texts(at)


@pytest.mark.slow
def test_shipped_models_show_on_home_and_results(finished_run, tmp_path, monkeypatch):
    import shutil
    import torch
    from fmnist_core.views import shared
    models = tmp_path / "models"
    models.mkdir()
    shutil.copyfile(finished_run / "best.pt", models / "mlp.pt")  # stands in for a shipped model
    monkeypatch.setattr(shared, "SHIPPED_DIR", models)
    acc = torch.load(models / "mlp.pt", weights_only=True)["metrics"]["test_accuracy"]

    at = page_app("home").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert table["model"].tolist() == ["mlp"] and table["test accuracy"].tolist() == [acc]
    assert "**cnn**: not yet trained" in texts(at)

    at = page_app("results").run()
    at.multiselect(key="res_sel").select("shipped:mlp").run()
    at.selectbox(key="res_detail").select("shipped:mlp").run()
    assert not at.exception
    # the shipped checkpoint carries no metrics.json: it is evaluated on the test set here
    assert "test images of **Shirt** predicted **T-shirt/top**" in texts(at)
    assert "cannot be deleted here" in texts(at)


@pytest.mark.slow
def test_stop_button_cancels_a_launched_run(runs_dir):
    at = page_app("train").run()
    at.number_input(key="tr_epochs").set_value(20).run()
    at.button(key="launch_btn").click().run()
    run_id = at.session_state["tr_watch"]
    run_dir = runs_dir / run_id
    at.button(key=f"stop_{run_id}").click().run()
    assert not at.exception
    assert runs.cancel_requested(run_dir)
    assert any("Stop requested" in w.value for w in at.warning)
    wait_for_status(run_dir, statuses=("cancelled",), timeout=120)
    at.run()
    assert any("cancelled" in w.value for w in at.warning)
