"""fmnist_core.views.train: the Train form (every preset round-trips, impossible values are
named in one sentence, changed fields are listed) and a run's progress with its ETA."""
from __future__ import annotations

import os
import time

import pytest

from fmnist_core import queue, runs
from fmnist_core.spec import run_spec
from fmnist_core.models import MLPConfig, config_to_dict, preset, preset_names
from fmnist_core.train import TrainConfig
from fmnist_core.views import train as view

ALL_DEVICES = {"cpu": None, "cuda": "no CUDA device on this machine", "mps": "no Apple MPS device"}


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_round_trips_through_the_form(name):
    values = {"start": name, **view.form_defaults(name)}
    spec, label, problems = view.check_form(values, ALL_DEVICES)
    assert problems == []
    p = preset(name)
    assert spec["model_config"] == config_to_dict(p["model"])
    assert spec["preset"] == name and label == name
    for k, v in p["train"].items():
        assert spec["train_config"][k] == v


def test_an_edited_preset_is_recorded_as_custom():
    values = {"start": "mlp-seed000", **view.form_defaults("mlp-seed000"), "hidden": "64"}
    spec, label, problems = view.check_form(values, ALL_DEVICES)
    assert problems == [] and spec["preset"] is None and label == "custom-mlp"
    assert spec["model_config"]["hidden"] == [64]


@pytest.mark.parametrize("change, message", [
    ({"lr": 0}, "learning rate must be in (0, 10]"),
    ({"batch_size": 0}, "batch size must be 1..60000"),
    ({"epochs": 2.5}, "epochs must be a whole number"),
    ({"val_fraction": 0.0, "patience": 3}, "early stopping needs a validation split"),
    ({"hidden": "0"}, "layer widths must be between 1 and 8192"),
    ({"arch": "cnn", "channels": ""}, "conv channels: give at least one layer width"),
    ({"arch": "cnn", "kernel": 4}, "kernel must be 1, 3, 5 or 7"),
    ({"device": "cuda"}, "Device cuda is not available: no CUDA device on this machine"),
    ({"train_limit": -5}, "Training images"),
    ({"arch": "cnn", "engine": "numpy"}, "NumPy engine trains MLPs and ResNets only"),
])
def test_impossible_values_are_named_in_one_sentence(change, message):
    values = {"start": view.CUSTOM["mlp"], **view.form_defaults(view.CUSTOM["mlp"]), **change}
    spec, label, problems = view.check_form(values, ALL_DEVICES)
    assert spec is None
    assert any(message in p for p in problems), problems


def test_changed_fields_name_what_differs_from_the_preset():
    values = {"start": "mlp-seed001", **view.form_defaults("mlp-seed001")}
    assert view.changed_fields(values) == []
    values.update(lr=0.01, hidden="64")
    assert view.changed_fields(values) == ["hidden", "lr"]


def test_progress_and_eta(store):
    spec = run_spec(MLPConfig(hidden=(8,)), TrainConfig(epochs=4))
    d = runs.create_run(spec, label="a")
    now = time.time()
    runs.set_status(d, "running", pid=os.getpid(), started=now - 30, progress=0.25, epoch=1, epochs=4)
    runs.log_epoch(d, {"epoch": 1, "train_loss": 0.5, "train_accuracy": 0.8, "epoch_seconds": 7.5})
    info = view.progress_info(runs.load_run(d), now=now)
    assert info["active"] and info["epoch_seconds"] == 7.5
    assert info["eta"] == pytest.approx(90.0)  # 30 s for a quarter: 90 s to go


def _listed(run_id_n, status, created, epochs=2, **info):
    """A run as runs.list_runs() gives it, alive in this process."""
    spec = run_spec(MLPConfig(hidden=(8,)), TrainConfig(epochs=epochs))
    return {"run_id": f"r{run_id_n}", "status": status, "config": {**spec, "created": created},
            "status_info": {"pid": os.getpid(), "host": runs.HOST, **info}, "history": []}


def test_queue_places_and_waits_from_the_first_second():
    """Each waiting run's place and wait come from the run list (the sidebar and the live view
    agree, and need nothing from the trainer process, which takes seconds to start)."""
    now = 1000.0
    done = [_listed(i, "finished", 100.0 + i, started=200.0, finished=260.0, epochs_run=2) for i in range(3)]
    running = _listed(10, "running", 900.0, started=970.0, progress=0.5)  # ETA 30 s
    a, b = _listed(11, "queued", 950.0), _listed(12, "queued", 960.0, epochs=4)
    q = queue.estimates([b, a, running, *done], slots=1, now=now)
    assert q["r11"] == {"position": 1, "ahead": 0, "wait": pytest.approx(30.0)}
    assert q["r12"] == {"position": 2, "ahead": 1, "wait": pytest.approx(90.0)}  # + a run like r11: 60 s
    assert view.queue_text(q["r12"]) == "waiting in the queue: position 2 — starts in about 1 min 30 s"
    # two slots: the first in line starts now
    q2 = queue.estimates([b, a, running, *done], slots=2, now=now)
    assert q2["r11"]["wait"] == 0 and view.queue_text(q2["r11"]).startswith("first in line, a training slot is free")
    # b trains 4 epochs: a run of the same model took 30 s an epoch
    assert q2["r12"]["wait"] == pytest.approx(30.0)
    # nothing like them has finished yet: a place, no guess
    q3 = queue.estimates([b, a, running], slots=1, now=now)
    assert q3["r12"]["wait"] is None and "no estimate yet" in view.queue_text(q3["r12"])
    assert queue.estimates([a], slots=1, now=now, blocked=True)["r11"]["wait"] is None


def test_class_limits_said_before_launch():
    """Issue 25, item 3: the limits where they apply, the parameter limit a problem before Launch."""
    lim = {"max_parameters": 100_000, "max_epochs": 5, "max_seconds": 900.0, "max_active_per_student": 2}
    text = view.limits_caption(lim, 101_770)
    assert "101,770 of 100,000 parameters" in text and "at most 5 epochs" in text and "15 min" in text
    assert "class limit is 100,000" in view.over_parameter_limit(101_770, lim)
    assert view.over_parameter_limit(100_000, lim) is None
    assert view.epochs_lowered("cnn-demo", 7, 5).startswith("cnn-demo trains 7 epochs; the class limit is 5")


def test_progress_names_training_time_apart_from_the_wall_clock():
    """Issue 25, item 8: the wall clock (loading and the final test included) and training alone."""
    run = {"status": "finished", "config": {"train_config": {"epochs": 2}},
           "history": [{"epoch": 1, "epoch_seconds": 13.0}, {"epoch": 2, "epoch_seconds": 14.9}],
           "status_info": {"started": 100.0, "finished": 135.0, "train_seconds": 27.9}}
    info = view.progress_info(run, now=200.0)
    assert info["elapsed"] == 35.0 and info["train_seconds"] == 27.9
    del run["status_info"]["train_seconds"]
    assert view.progress_info(run, now=200.0)["train_seconds"] == pytest.approx(27.9)
