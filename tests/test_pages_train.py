"""The Train page under AppTest: a preset fills the form and counts parameters, impossible values
show an error and launch nothing, a tiny launch creates a run that finishes and is watched live,
and Stop cancels a launched run."""
from __future__ import annotations

import pytest

from fmnist_core import runs
from fmnist_core.models import DEMO_PRESET, build_model, count_parameters, preset

from page_util import page_app, rerun_until, texts, unescape, wait_for_status


def test_preset_fills_the_form_and_counts_parameters(runs_dir):
    at = page_app("train").run()
    assert not at.exception
    # the page opens on the class-demo preset
    assert at.selectbox(key="tr_start").value == DEMO_PRESET
    assert at.metric[0].value == f"{count_parameters(build_model(preset(DEMO_PRESET)['model'])):,}"
    at.selectbox(key="tr_start").select("mlp-seed000").run()
    assert at.metric[0].value == "101,770"  # 784-128-10
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
    at.selectbox(key="tr_start").select("mlp-seed000").run()
    widget = at.selectbox(key=key) if key == "tr_device" else (
        at.text_input(key=key) if key == "tr_hidden" else at.number_input(key=key))
    (widget.select(value) if key == "tr_device" else widget.set_value(value)).run()
    assert not at.exception
    errors = [unescape(e.value) for e in at.error]
    assert any(message in e for e in errors), errors
    assert at.button(key="launch_btn").disabled
    assert runs.list_runs() == []


def test_numpy_engine_trains_mlps_only(runs_dir):
    at = page_app("train").run()
    at.radio(key="tr_arch").set_value("cnn").run()
    at.radio(key="tr_engine").set_value("numpy").run()
    assert any("NumPy engine trains MLPs and ResNets only" in e.value for e in at.error)
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
    made = [r["run_id"] for r in runs.list_runs()]
    assert len(made) == 1
    run = runs.load_run(made[0])
    assert run["config"]["model_config"]["hidden"] == [16]
    assert run["config"]["train_limit"] == 2000 and run["config"]["train_config"]["epochs"] == 1
    assert run["config"]["engine"] == engine
    assert at.session_state["tr_watch"] == made[0]
    wait_for_status(made[0])
    rerun_until(at, lambda at: any("finished" in s.value.lower() for s in at.success))
    assert not at.exception
    assert any("finished" in s.value.lower() for s in at.success), (texts(at), [p.proto.text for p in at.get("progress")])
    assert "Test accuracy" in texts(at)


@pytest.mark.slow
def test_stop_button_cancels_a_launched_run(runs_dir):
    at = page_app("train").run()
    at.number_input(key="tr_epochs").set_value(20).run()
    at.button(key="launch_btn").click().run()
    run_id = at.session_state["tr_watch"]
    at.button(key=f"stop_{run_id}").click().run()
    assert not at.exception
    assert runs.cancel_requested(run_id)
    assert any("Stop requested" in w.value for w in at.warning)
    wait_for_status(run_id, statuses=("cancelled",), timeout=120)
    rerun_until(at, lambda at: any("cancelled" in w.value.lower() or "stopped" in w.value.lower() for w in at.warning))
    assert any("cancelled" in w.value.lower() or "stopped" in w.value.lower() for w in at.warning)


@pytest.mark.slow
def test_after_launch_the_form_folds_and_the_run_shows_its_place_in_line(runs_dir):
    """The live view comes into view (the form folds away) and says where the run waits and for
    how long from the first second, before its trainer process has even started."""
    import os
    import time as _time
    from fmnist_core import roles, submit
    from fmnist_core.spec import run_spec
    from fmnist_core.models import MLPConfig
    from fmnist_core.train import TrainConfig
    # someone else's run holds the only slot, half done after 30 s: about 30 s to go
    other = runs.create_run(run_spec(MLPConfig(hidden=(8,)), TrainConfig(epochs=1)), label="other", owner="bo")
    runs.set_status(other, "running", pid=os.getpid(), host=runs.HOST, started=_time.time() - 30, progress=0.5)
    try:
        at = page_app("train").run()
        assert at.session_state["tr_form_open"] is True
        at.number_input(key="tr_epochs").set_value(1).run()
        at.number_input(key="tr_train_limit").set_value(1000).run()
        at.button(key="launch_btn").click().run()
        assert not at.exception
        run_id = at.session_state["tr_watch"]
        assert at.session_state["tr_form_open"] is False
        bars = [p.proto.text for p in at.get("progress")]
        assert any("waiting in the queue: position 1 — starts in about" in b for b in bars), bars
        side = "\n".join(c.value for c in at.sidebar.caption)
        assert "#1 in line" in side and "starts in about" in side
    finally:
        runs.set_status(other, "finished")
    submit.stop_run(roles.operator(), run_id)  # it leaves the queue without training
    wait_for_status(run_id, statuses=("cancelled",), timeout=120)


def test_a_mangled_settings_link_is_named_and_the_presets_values_kept(runs_dir):
    at = page_app("train")
    for k, v in {"start": "mlp-seed000", "augment_shift": "100", "val_fraction": "0.9", "kernel": "4",
                 "epochs": "3", "hidden": "[click here](http://evil.example) ![x](http://evil.example/x.png)"}.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception  # before: a slider out of range raised StreamlitAPIException
    from fmnist_core.views.train import form_defaults
    base = form_defaults("mlp-seed000")
    assert at.slider(key="tr_augment_shift").value == base["augment_shift"]
    assert at.slider(key="tr_val_fraction").value == base["val_fraction"]
    assert at.number_input(key="tr_epochs").value == 3 != base["epochs"]  # the good value is used
    assert at.text_input(key="tr_hidden").value == base["hidden"]  # the preset's, not the link's text
    warned = [w.value for w in at.warning]
    for field in ("shifts", "validation split", "kernel", "hidden layers"):
        assert any(f"link's {field} is not" in unescape(w) for w in warned), (field, warned)
    # nothing from the link reaches the page as Markdown (a link or an image of the sender's)
    page = "\n".join(e.value for e in (*at.markdown, *at.caption, *at.warning, *at.error, *at.info))
    assert "evil" not in page and "](" not in page


def test_typed_markdown_in_a_form_field_is_shown_as_plain_text(runs_dir):
    at = page_app("train").run()
    at.selectbox(key="tr_start").select("mlp-seed000").run()
    at.text_input(key="tr_hidden").set_value("[free prize](http://evil.example)").run()
    assert not at.exception
    err = next(e.value for e in at.error if "hidden layers" in unescape(e.value))
    assert "[free prize](http" not in err and r"\[free prize\]\(http" in err


def test_vary_this_setting_opens_a_study_of_the_form(runs_dir):
    """Train's "Vary this setting": the form's settings are the study's base, the picked setting
    and its values (typed as on the Studies page) its question; a bad value is one sentence."""
    from fmnist_core import studies
    at = page_app("train").run()
    at.selectbox(key="tr_start").select("mlp-seed000").run()
    at.number_input(key="tr_epochs").set_value(2)
    at.number_input(key="tr_train_limit").set_value(500)
    at.selectbox(key="tr_vary_setting").select("depth").run()
    assert at.text_input(key="tr_vary_values_depth").value == "0, 1, 2, 3"
    at.text_input(key="tr_vary_values_depth").set_value("1, 2..3")
    at.text_input(key="tr_vary_name").set_value("deep")
    at.button(key="vary_open").click().run()
    assert not at.exception
    assert any("depth=2..3: depth cannot be '2..3'" in unescape(e.value) for e in at.error), [e.value for e in at.error]
    assert studies.list_studies() == []
    at.text_input(key="tr_vary_values_depth").set_value("1, 2")
    at.number_input(key="tr_vary_seeds").set_value(1)
    at.button(key="vary_open").click().run()
    assert not at.exception
    assert "Study deep is open: take its trials on the Studies page." in texts(at)
    st = studies.load_study("deep")
    assert st.settings == {"depth": {"values": [1, 2]}} and st.trial_budget() == 2
    assert st.base["train_config"]["epochs"] == 2 and st.base["train_limit"] == 500
    assert st.base["model_config"]["hidden"] == [128]
    # the Studies page opens on the new study, saying so
    assert at.session_state.study_pick == "deep"
