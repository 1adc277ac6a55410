"""How a run learned, stored and shown: live curve points and each epoch's validation
confusion matrix go from a real run into the run store and its checkpoint and come back
out (runs.load_run), the shipped models carry theirs, and the views turn them into curves
that move within an epoch, an epoch slider's matrices and sentences about which classes
were learned first."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fmnist_core import runs
from fmnist_core.data import CLASSES
from fmnist_core.execute import execute_run
from fmnist_core.spec import run_spec
from fmnist_core.models import MLPConfig
from fmnist_core.train import TrainConfig
from fmnist_core.views import labels, results, shared

from conftest import ROOT
from conftest import skip_unless_ci


def test_a_run_stores_its_curve_points_and_each_epochs_validation_confusion(store):
    cfg = TrainConfig(epochs=2, batch_size=64, progress_every=5, val_fraction=0.05, device="cpu", threads=1)
    rid = runs.create_run(run_spec(MLPConfig(hidden=(32,)), cfg, train_limit=1280), label="learning")
    summary = execute_run(rid)
    assert summary["status"] == "finished"
    r = runs.load_run(rid)
    xs = [p["x"] for p in r["points"]]
    assert xs == [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]  # 20 batches an epoch, a point every 5
    assert all(0 < p["train_loss"] and 0 <= p["train_accuracy"] <= 1 for p in r["points"])
    # the running mean at an epoch's last batch is that epoch's row
    assert r["points"][3]["train_loss"] == pytest.approx(r["history"][0]["train_loss"], rel=1e-6)
    for row in r["history"]:  # merged back from epoch_confusion.json
        cm = np.asarray(row["val_confusion"])
        assert cm.shape == (10, 10) and cm.sum() == 3000
        assert np.trace(cm) / 3000 == pytest.approx(row["val_accuracy"], abs=1e-6)
    ck = torch.load(summary["checkpoint"], weights_only=True)["metrics"]
    assert [p["x"] for p in ck["points"]] == xs and ck["history"][1]["val_confusion"] == r["history"][1]["val_confusion"]
    hist_csv = (runs.work_dir(rid) / "history.csv").read_text()
    assert "val_confusion" not in hist_csv and "val_accuracy" in hist_csv  # figures only in the CSV


def test_curves_move_within_an_epoch_and_dots_mark_epoch_ends():
    hist = [{"epoch": 1, "train_loss": 0.6, "val_loss": 0.5, "train_accuracy": 0.8, "val_accuracy": 0.82},
            {"epoch": 2, "train_loss": 0.4, "val_loss": 0.45, "train_accuracy": 0.85, "val_accuracy": 0.84}]
    pts = [{"x": 0.5, "train_loss": 0.9, "train_accuracy": 0.7}, {"x": 1.0, "train_loss": 0.6, "train_accuracy": 0.8},
           {"x": 1.5, "train_loss": 0.45, "train_accuracy": 0.84}]
    df = shared.curves_long([("a", hist)], {"a": pts})
    train = df[(df["metric"] == "loss") & (df["split"] == "train")]
    assert train["epoch"].tolist() == [0.5, 1, 1.5, 2] and train["end"].tolist() == [False, True, False, True]
    val = df[(df["metric"] == "loss") & (df["split"] == "validation")]
    assert val["epoch"].tolist() == [1, 2] and val["end"].all()
    watched = shared.curves_long([("s", [{"epoch": 1, "train_loss": 0.5, "watch_loss": 0.4}])])
    assert set(watched["split"]) == {"train", "test (watched)"}


def test_missing_figures_read_as_a_dash():
    assert labels._fmt(None) == "—" and labels._fmt(0.5) == "0.5"


@pytest.mark.shipped
@pytest.mark.parametrize("name", ["cnn.pt", "mlp.pt"])
def test_the_shipped_models_carry_their_history_and_each_epochs_watched_confusion(name):
    """What `make models` stores (--watch-test: the presets have no validation split) and the
    Results page reads on a first visit."""
    meta = torch.load(ROOT / "artifacts" / "models" / name, weights_only=True)["metrics"]
    hist = meta.get("history") or []
    if not any(h.get("watch_confusion") for h in hist):
        skip_unless_ci(f"{name} predates per-epoch confusion matrices: run `make models`")
    assert len(hist) == meta["epochs_run"] and meta["points"] and meta["watch_test"]
    entry = shared.model_list([{"name": name[:3], "path": "x", "available": True, "metrics": meta,
                                "model_config": {"kind": name[:3]}}], [])[f"shipped:{name[:3]}"]
    assert entry["history"] == hist and entry["points"] == meta["points"]
    split, cms = results.epoch_confusions(hist)
    assert split == "test (watched)" and sorted(cms) == list(range(1, len(hist) + 1))
    assert all(cm.sum() == 10000 for cm in cms.values())
    last = cms[len(hist)]
    # the model kept is the last epoch's; the CNN watched in bf16 autocast, its final test ran in fp32
    assert np.trace(last) / 10000 == pytest.approx(meta["test_accuracy"], abs=0.002)
    rec = results.recall_by_epoch(cms)
    assert len(rec) == 10 * len(hist) and rec["recall"].between(0, 1).all()
    story = " ".join(results.learning_story(cms))
    assert all(story.count(c) >= 1 for c in CLASSES)  # every class is placed: first, later or never
    assert [f.rule for f in results.diagnosis(entry, {"accuracy": meta["test_accuracy"]})] == ["healthy"]


def test_the_train_page_diagnoses_a_finished_run_and_waits_for_an_active_one():
    from fmnist_core.views import train as train_view
    run = {"status": "finished", "status_info": {"test_accuracy": 0.128},
           "config": {"train_config": {"lr": 10.0}},
           "history": [{"epoch": 1, "train_loss": 2.4, "train_accuracy": 0.1, "val_accuracy": 0.1, "val_loss": 2.3}]}
    f = train_view.diagnosis(run)
    assert f[0].severity == "error" and "learning rate is too high (now 10)" in f[0].text
    assert train_view.diagnosis({**run, "status": "running"}) == []
