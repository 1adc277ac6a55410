"""fmnist_core.views: what the dashboard shows, checked without a browser."""
from __future__ import annotations

import io
import os
import time

import numpy as np
import pytest
from PIL import Image

from fmnist_core import runs, views
from fmnist_core.data import CLASSES
from fmnist_core.jobs import run_spec
from fmnist_core.models import MLPConfig, build_model, config_to_dict, count_parameters, preset, preset_names
from fmnist_core.train import TrainConfig

ALL_DEVICES = {"cpu": None, "cuda": "no CUDA device on this machine", "mps": "no Apple MPS device"}


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_round_trips_through_the_form(name):
    values = {"start": name, **views.form_defaults(name)}
    spec, label, problems = views.check_form(values, ALL_DEVICES)
    assert problems == []
    p = preset(name)
    assert spec["model_config"] == config_to_dict(p["model"])
    assert spec["preset"] == name and label == name
    for k, v in p["train"].items():
        assert spec["train_config"][k] == v


def test_an_edited_preset_is_recorded_as_custom():
    values = {"start": "mlp-seed000", **views.form_defaults("mlp-seed000"), "hidden": "64"}
    spec, label, problems = views.check_form(values, ALL_DEVICES)
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
    ({"arch": "cnn", "engine": "numpy"}, "NumPy engine trains MLPs only"),
])
def test_impossible_values_are_named_in_one_sentence(change, message):
    values = {"start": views.CUSTOM["mlp"], **views.form_defaults(views.CUSTOM["mlp"]), **change}
    spec, label, problems = views.check_form(values, ALL_DEVICES)
    assert spec is None
    assert any(message in p for p in problems), problems


def test_layer_summary_counts_what_the_model_holds():
    cfg = preset("cnn-seed003")["model"]
    table = views.layer_summary(cfg)
    assert table["parameters"].sum() == count_parameters(build_model(cfg))
    assert table.iloc[-1]["output shape"] == "10"
    assert table.iloc[0]["output shape"] == "1 × 28 × 28"


def test_data_views(ds):
    idx = views.sample_indices(ds.y_train, per_class=4, seed=1)
    assert idx.shape == (10, 4)
    assert all((ds.y_train[idx[k]] == k).all() for k in range(10))
    means = views.mean_images(ds.x_train, ds.y_train)
    assert means.shape == (10, 28, 28) and 0 < means.mean() < 255
    assert views.class_balance(ds)["train"].tolist() == [6000] * 10
    m = views.montage(ds.x_test[:3], factor=2, gap=1)
    assert m.shape == (56, 3 * 56 + 2) and m.dtype == np.uint8


def test_progress_eta_and_queue(tmp_path):
    spec = run_spec(MLPConfig(hidden=(8,)), TrainConfig(epochs=4))
    d = runs.create_run(spec, root=tmp_path, label="a")
    now = time.time()
    runs.set_status(d, "running", pid=os.getpid(), started=now - 30, progress=0.25, epoch=1, epochs=4)
    runs.append_history(d, {"epoch": 1, "train_loss": 0.5, "train_accuracy": 0.8, "epoch_seconds": 7.5})
    info = views.progress_info(runs.load_run(d), now=now)
    assert info["active"] and info["epoch_seconds"] == 7.5
    assert info["eta"] == pytest.approx(90.0)  # 30 s for a quarter: 90 s to go
    q = runs.create_run(spec, root=tmp_path, label="b")
    runs.set_status(q, "queued", pid=os.getpid())
    active = views.active_runs(tmp_path)
    assert [r["status"] for r in active] == ["running", "queued"]
    assert active[1]["queue_position"] == 1
    runs.set_status(d, "running", pid=2 ** 22 + 12345)  # a process that does not exist
    d_status = runs.read_json(d / "status.json")
    d_status["updated"] = now - 60
    runs.write_json_atomic(d / "status.json", d_status)
    assert [r["run_id"] for r in views.active_runs(tmp_path)] == [q.name]


def test_confusion_exports():
    metrics = {"confusion_matrix": (np.eye(10, dtype=int) * 90 + 1).tolist()}
    cm = views.confusion(metrics)
    norm = views.confusion(metrics, normalise=True)
    assert np.allclose(norm.sum(1), 1)
    csv = views.confusion_csv(cm)
    assert csv.splitlines()[0].startswith(",pred T-shirt/top") and "true Ankle boot" in csv
    img = Image.open(io.BytesIO(views.confusion_png(cm, title="t")))
    assert img.format == "PNG" and img.size[0] > 10 * 64


def test_cell_indices_and_summary_rows():
    y = np.array([0, 0, 1, 1, 1])
    pred = np.array([0, 1, 1, 0, 1])
    assert views.cell_indices(y, pred, 1, 0).tolist() == [3]
    hist = [{"epoch": 1, "train_accuracy": 0.7, "val_accuracy": 0.72, "elapsed": 3.0},
            {"epoch": 2, "train_accuracy": 0.8, "val_accuracy": 0.71, "elapsed": 6.0}]
    row = views.summary_row("r", hist, "finished", {"accuracy": 0.7, "loss": 0.8},
                            {"kind": "mlp", "hidden": [8]})
    assert row["best val acc"] == 0.72 and row["at epoch"] == 1 and row["last val acc"] == 0.71
    assert row["model"] == "MLP 784-8-10, relu" and row["time (s)"] == 6.0
    long = views.curves_long([("r", hist)])
    assert set(long["split"]) == {"train", "validation"} and len(long) == 4


def test_describe_model_names_classes_of_models():
    assert views.describe_model(config_to_dict(preset("mlp-seed003")["model"])) == \
        "MLP 784-256-128-10, relu, dropout 0.2"
    assert views.describe_model(config_to_dict(preset("cnn-seed003")["model"])).startswith(
        "CNN conv 6-16 (k5, avg pool), fc 120-84")
    assert len(CLASSES) == 10


def test_changed_fields_name_what_differs_from_the_preset():
    values = {"start": "mlp-seed001", **views.form_defaults("mlp-seed001")}
    assert views.changed_fields(values) == []
    values.update(lr=0.01, hidden="64")
    assert views.changed_fields(values) == ["hidden", "lr"]
