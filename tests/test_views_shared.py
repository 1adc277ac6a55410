"""fmnist_core.views.shared: what several pages show — model and run names, layer tables, the
job queue, the list of models to choose from, and inputs checked and copied."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

from fmnist_core import runs
from fmnist_core.data import CLASSES
from fmnist_core.spec import run_spec
from fmnist_core.models import MLPConfig, build_model, config_to_dict, count_parameters, preset
from fmnist_core.train import TrainConfig
from fmnist_core.views import shared


def test_layer_summary_counts_what_the_model_holds():
    cfg = preset("cnn-seed003")["model"]
    table = shared.layer_summary(cfg)
    assert table["parameters"].sum() == count_parameters(build_model(cfg))
    assert table.iloc[-1]["output shape"] == "10"
    assert table.iloc[0]["output shape"] == "1 × 28 × 28"


def test_describe_model_names_classes_of_models():
    assert shared.describe_model(config_to_dict(preset("mlp-seed003")["model"])) == \
        "MLP 784-256-128-10, relu, dropout 0.2"
    assert shared.describe_model(config_to_dict(preset("cnn-seed003")["model"])).startswith(
        "CNN conv 6-16 (k5, avg pool), fc 120-84")
    assert len(CLASSES) == 10


def test_queue_lists_live_runs_in_order(store):
    spec = run_spec(MLPConfig(hidden=(8,)), TrainConfig(epochs=4))
    d = runs.create_run(spec, label="a", owner="ada")
    now = time.time()
    runs.set_status(d, "running", pid=os.getpid(), host=runs.HOST, started=now - 30, progress=0.25,
                    epoch=1, epochs=4)
    q = runs.create_run(spec, label="b", owner="bo")
    runs.set_status(q, "queued", pid=os.getpid(), host=runs.HOST)
    active = shared.active_runs(runs.list_runs())
    assert [r["status"] for r in active] == ["running", "queued"]
    assert active[1]["label"] == "bo · MLP 784-8-10"
    runs.set_status(d, "running", pid=2 ** 22 + 12345, host=runs.HOST)  # a process that does not exist
    assert [r["run_id"] for r in shared.active_runs(runs.list_runs())] == [q]
    # on another machine (a Ray worker): alive while its heartbeat is fresh
    runs.set_status(d, "running", pid=1, host="elsewhere")
    assert len(shared.active_runs(runs.list_runs())) == 2
    runs.set_status(d, "running", pid=1, host="elsewhere", heartbeat=now - runs.STALE_SECONDS - 5)
    assert [r["run_id"] for r in shared.active_runs(runs.list_runs())] == [q]


def test_curves_as_one_long_table():
    hist = [{"epoch": 1, "train_accuracy": 0.7, "val_accuracy": 0.72, "elapsed": 3.0},
            {"epoch": 2, "train_accuracy": 0.8, "val_accuracy": 0.71, "elapsed": 6.0}]
    long = shared.curves_long([("r", hist)])
    assert set(long["split"]) == {"train", "validation"} and len(long) == 4


def test_model_choices_list_shipped_models_and_finished_runs_only():
    cfg = {"kind": "mlp", "hidden": [8]}
    shipped = [{"name": "mlp", "path": "/m/mlp.pt", "available": True, "metrics": {"test_accuracy": 0.9},
                "model_config": cfg},
               {"name": "cnn", "path": "/m/cnn.pt", "available": False, "metrics": {}, "model_config": None}]
    run_list = [{"run_id": r, "status": st, "checkpoint": ck, "config": {"model_config": cfg, "created": 0},
                 "status_info": {}} for r, st, ck in (("a", "finished", "/r/a/best.pt"),
                                                      ("b", "running", "/r/b/best.pt"),
                                                      ("c", "finished", None), ("d", "cancelled", "/r/d/best.pt"))]
    entries = shared.model_list(shipped, run_list)
    assert list(entries) == ["shipped:mlp", "run:a", "run:b", "run:c", "run:d"]  # Results shows them all
    choices = shared.model_choices(entries)
    assert list(choices) == ["shipped:mlp", "run:a"]
    assert "test 90.0%" in choices["shipped:mlp"]["label"]
    assert choices["run:a"]["checkpoint"] == "/r/a/best.pt" and choices["run:a"]["arch"] == "mlp"
    assert shared.default_choice(choices) == "shipped:mlp"
    assert shared.default_choice({}) is None


def test_tile_grids_gray_and_colour(ds):
    m = shared.tile_grid(ds.x_test[:3], factor=2, gap=1)
    assert m.shape == (56, 3 * 56 + 2) and m.dtype == np.uint8
    assert (m[:, 56] == 128).all() and (m[:56, :56] == shared.upscale(ds.x_test[0], 2)).all()
    grid = shared.tile_grid(np.zeros((10, 4, 4, 3), np.uint8), cols=4, factor=3, gap=2, gap_colour=(70, 70, 70))
    assert grid.shape == (3 * 12 + 2 * 2, 4 * 12 + 3 * 2, 3) and tuple(grid[0, 12]) == (70, 70, 70)


def test_inputs_are_checked_and_copied(ds):
    x = ds.x_test[0]
    f = shared.as_input(x)
    assert f.dtype == np.float32 and f.max() <= 1.0 and f is not x
    with pytest.raises(ValueError, match="28x28"):
        shared.as_input(np.zeros((3, 28, 28)))


def test_random_test_index_of_one_class():
    y = np.array([0, 1, 1, 2, 1])
    assert {shared.random_test_index(y, 1, np.random.default_rng(s)) for s in range(20)} == {1, 2, 4}


def test_messages_for_the_browser_leave_the_servers_folders_out(monkeypatch, tmp_path):
    from fmnist_core import data
    from fmnist_core.views.shared import for_browser, data_origin
    monkeypatch.setattr(data, "ARTIFACTS", tmp_path / "arts")
    assert for_browser(f"checkpoint not found: {data.PROJECT_ROOT}/artifacts/models/cnn.pt") == \
        "checkpoint not found: artifacts/models/cnn.pt"
    assert for_browser(f"{tmp_path}/arts/work/r1/best.pt: not a readable checkpoint") == \
        "artifacts/work/r1/best.pt: not a readable checkpoint"
    assert for_browser("FileNotFoundError: [Errno 2] No such file: '/home/teacher/secret/x.json'") == \
        "FileNotFoundError: [Errno 2] No such file: '…/x.json'"
    assert for_browser("no run named 'r9' in the run store (sqlite:////srv/class/mlflow.db)") == \
        "no run named 'r9' in the run store"
    assert for_browser("see http://class.example:5000/api/2.0/runs and 3/4 of them") == \
        "see http://class.example:5000/api/2.0/runs and 3/4 of them"  # URLs and fractions stay
    assert for_browser(None) is None
    assert data_origin(str(data.DEBIAN_DIR)) == "from Debian's dataset-fashion-mnist package"
    assert "/" not in data_origin("/srv/data/fmnist")
