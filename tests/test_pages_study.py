"""The Study page (AppTest): a study opened from a template in the page's form, "Take a trial"
launches the next trial as the user's run, and the answer fills in as it trains (live fragment)."""
from __future__ import annotations

from fmnist_core import runs, studies

from page_util import metrics, page_app, rerun_until, texts


def test_open_a_study_take_a_trial_and_see_its_point(runs_dir):
    at = page_app("study").run()
    assert not at.exception, at.exception
    assert "No study yet. Open one above." in texts(at)
    at.selectbox(key="study_tpl").set_value("batchnorm").run()
    at.text_input(key="study_name").set_value("bn")
    at.number_input(key="study_seeds_batchnorm").set_value(1)
    at.number_input(key="study_limit").set_value(500)
    at.button[0].click().run()  # the form's submit button (the only button before a study exists)
    assert not at.exception, at.exception
    assert "Study bn is open: 2 trials." in texts(at)
    assert "Varying model.batchnorm over False, True" in texts(at)
    assert "No trial has finished yet" in texts(at)

    at.button(key="study_take").click().run()
    assert not at.exception, at.exception
    assert "Trial 0 (model.batchnorm=False, seed 0) is your run now" in texts(at)
    run_id = studies.load_study("bn").optuna().trials[0].user_attrs["run_id"]
    assert runs.load_summary(run_id)["config"]["train_limit"] == 500
    # the fragment refreshes the answer: the finished trial becomes a point with its owner
    at = rerun_until(at, lambda a: metrics(a).get("Finished") == "1", timeout=180)
    assert metrics(at)["Finished"] == "1", texts(at)
    assert "model.batchnorm=False: " in texts(at) and "no other point has finished yet" in texts(at)
    table = at.dataframe[0].value
    assert list(table["owner"]) == [runs.load_summary(run_id)["owner"]] and list(table["state"]) == ["complete"]
    # a seed's experiment in the storage: the table of its reported figure beside ours
    from fmnist_core.study_settings import base_spec
    studies.create_study("repro-001", {}, seeds=3, base=base_spec("mlp-seed001", epochs=1, train_limit=500),
                         template="seed001", reported=87.45)
    at.run()
    assert not at.exception, at.exception
    assert [h.value for h in at.subheader] == ["The seeds' results reproduced"]
    rep = next(d.value for d in at.dataframe if "verdict" in d.value.columns)
    assert list(rep["reported"]) == ["87.45%"] and list(rep["verdict"]) == ["—"]
    assert list(rep["seeds"]) == ["0 of 3"] and list(rep["study"]) == ["repro-001"]
