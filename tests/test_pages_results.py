"""The Results page under AppTest: a finished run is compared, its confusion matrix drives the
class pickers, and it can be deleted; a shipped model (no metrics stored) is evaluated on the
test set and cannot be deleted; without any model the page says what to do."""
from __future__ import annotations

import pytest

from page_util import finished_run, page_app, shipped_mlp, texts  # noqa: F401 (fixtures)


@pytest.mark.slow
def test_results_page_shows_and_deletes_a_run(finished_run):
    at = page_app("results").run()
    assert not at.exception
    key = f"run:{finished_run}"
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
    at.checkbox(key=f"res_del_ok_{finished_run}").check().run()
    at.button(key="res_del_btn").click().run()
    assert not at.exception
    from fmnist_core import runs
    assert runs.list_runs() == []
    assert key not in at.session_state["res_sel"]


def test_results_page_without_runs_says_what_to_do(runs_dir, monkeypatch):
    from fmnist_core.views import shared
    monkeypatch.setattr(shared, "SHIPPED_DIR", runs_dir / "no-models-here")
    at = page_app("results").run()
    assert not at.exception
    assert "Launch a run on the Train page" in texts(at)


@pytest.mark.slow
def test_a_shipped_model_is_evaluated_here_and_cannot_be_deleted(shipped_mlp):
    at = page_app("results").run()
    at.multiselect(key="res_sel").select("shipped:mlp").run()
    at.selectbox(key="res_detail").select("shipped:mlp").run()
    assert not at.exception
    # the shipped checkpoint carries no metrics.json: it is evaluated on the test set here
    assert "test images of **Shirt** predicted **T-shirt/top**" in texts(at)
    assert "cannot be deleted here" in texts(at)
