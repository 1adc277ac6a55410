"""The Results page under AppTest: a finished run is compared, its confusion matrix drives the
class pickers, and it can be deleted; a shipped model (no metrics stored) is evaluated on the
test set and cannot be deleted; without any model the page says what to do."""
from __future__ import annotations

import pytest

import re

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
    # delete: the page says what it does, and the button stays disabled until the confirmation is ticked
    assert "until the teacher removes deleted runs for good" in texts(at)
    assert "cannot be undone" not in texts(at)
    assert at.button(key="res_del_btn").disabled
    at.checkbox(key=f"res_del_ok_{finished_run}").check().run()
    at.button(key="res_del_btn").click().run()
    assert not at.exception
    from fmnist_core import runs, trash
    assert runs.list_runs() == []
    assert key not in at.session_state["res_sel"]
    # what the page said is true: hidden, kept, restorable by the teacher (the laptop's user)
    assert [r["run_id"] for r in trash.deleted_runs()] == [finished_run]
    at.run()
    at.button(key=f"res_restore_{finished_run}").click().run()
    assert not at.exception and [r["run_id"] for r in runs.list_runs()] == [finished_run]
    ckpt_dir = runs._local_artifacts(runs.load_run(finished_run, history=False)["artifact_uri"])
    assert (ckpt_dir / "best.pt").is_file()
    runs.delete_run(finished_run)
    at.run()
    assert at.button(key="res_purge_btn").disabled  # until the confirmation is ticked
    at.checkbox(key="res_purge_ok").check().run()
    at.button(key="res_purge_btn").click().run()
    assert not at.exception
    assert trash.deleted_runs() == [] and not (ckpt_dir / "best.pt").exists()


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
    # the page's figures are evaluate()'s on the same model: a page that shifted every
    # prediction (or read another model) would show other counts
    from fmnist_core.data import CLASSES, load
    from fmnist_core.evaluate import evaluate
    from fmnist_core.models import load_model
    ds = load()
    ref = evaluate(load_model(shipped_mlp), ds.x_test, ds.y_test)
    table = at.dataframe[0].value
    assert table.loc[table["run"].str.contains("mlp"), "test acc"].iloc[0] == pytest.approx(ref["accuracy"], abs=1e-4)
    for t, p in ((6, 0), (1, 1), (0, 6), (9, 7)):
        at.selectbox(key="res_true").select(CLASSES[t]).run()
        at.selectbox(key="res_pred").select(CLASSES[p]).run()
        shown = int(re.search(rf"\*\*(\d+)\*\* test images of \*\*{re.escape(CLASSES[t])}\*\*", texts(at)).group(1))
        assert shown == ref["confusion_matrix"][t][p], (CLASSES[t], CLASSES[p])
