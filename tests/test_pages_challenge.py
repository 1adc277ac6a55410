"""The Challenge page (AppTest): the teacher's form sets a challenge in the store, entries made
afterwards rank or are listed with the broken rule, and a bad form is one sentence."""
from __future__ import annotations

from fmnist_core import challenge as core, roles, runs
from fmnist_core.spec import run_spec
from fmnist_core.models import MLPConfig
from fmnist_core.train import TrainConfig

from page_util import page_app, texts
from ui import common


def _entry(name: str, hidden: tuple[int, ...], acc: float, secs: float = 30.0) -> str:
    spec = run_spec(MLPConfig(hidden=hidden), TrainConfig(epochs=1))
    rid = runs.create_run(spec, label="entry", owner=name, owner_id=roles.user_id(name * 32))
    runs.set_status(rid, "finished", test_accuracy=acc, train_seconds=secs)
    return rid


def test_the_teacher_sets_a_challenge_and_the_page_ranks_entries(runs_dir):
    at = page_app("challenge").run()
    assert not at.exception
    assert "No challenge is set" in texts(at)
    at.text_input(key="ch_title").set_value("Small MLPs")
    at.number_input(key="ch_goal").set_value(85.0)
    at.number_input(key="ch_params").set_value(50_000)
    at.multiselect(key="ch_kinds").set_value(["mlp"])
    at.checkbox(key="ch_has_deadline").set_value(False)
    at.text_input(key="ch_link").set_value("http://host:8501/train?start=mlp-seed000&hidden=32&lr=0.01")
    at.button[0].click().run()  # the form's submit button
    assert not at.exception, at.exception
    c = core.get_challenge()
    assert (c.title, c.goal, c.rules.max_parameters, c.rules.kinds, c.deadline) == ("Small MLPs", 0.85, 50_000,
                                                                                   ("mlp",), None)
    assert c.start == {"start": "mlp-seed000", "hidden": "32", "lr": "0.01"}
    ok = _entry("ada", (32,), 0.86)
    bad = _entry("bo", (128,), 0.88)
    common.run_list.clear()  # made here, not through the queue: the page would see them within 15 s
    at.run()
    assert not at.exception
    ranked, broken = (t.value for t in at.table)
    assert ranked["student"].tolist() == ["ada"] and ranked["goal"].tolist() == ["met"]
    # from the starting point (hidden 32, lr 0.01, 10 epochs) her run differs in epochs and rate
    assert ranked["what differs from the starting point"].tolist() == ["epochs 1, lr 0.001"]
    assert broken["student"].tolist() == ["bo"]
    assert broken["broken rules"].tolist() == ["parameters: 101,770 parameters, the rule allows 50,000"]
    assert "Start from" in texts(at) and ok and bad


def test_a_bad_settings_link_is_one_sentence_and_sets_nothing(runs_dir):
    at = page_app("challenge").run()
    at.text_input(key="ch_link").set_value("http://host/train?start=no-such-preset")
    at.button[0].click().run()
    assert not at.exception
    assert "'no-such-preset', which is not a preset" in texts(at)
    assert core.get_challenge() is None
