"""fmnist_core.views.results: the comparison row of a run, confusion-matrix exports (CSV, PNG)
and the test images behind one cell."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from fmnist_core.views import results as view


def test_confusion_exports():
    metrics = {"confusion_matrix": (np.eye(10, dtype=int) * 90 + 1).tolist()}
    cm = view.confusion(metrics)
    norm = view.confusion(metrics, normalise=True)
    assert np.allclose(norm.sum(1), 1)
    csv = view.confusion_csv(cm)
    assert csv.splitlines()[0].startswith(",pred T-shirt/top") and "true Ankle boot" in csv
    img = Image.open(io.BytesIO(view.confusion_png(cm, title="t")))
    assert img.format == "PNG" and img.size[0] > 10 * 64


def test_cell_indices_and_summary_rows():
    y = np.array([0, 0, 1, 1, 1])
    pred = np.array([0, 1, 1, 0, 1])
    assert view.cell_indices(y, pred, 1, 0).tolist() == [3]
    hist = [{"epoch": 1, "train_accuracy": 0.7, "val_accuracy": 0.72, "elapsed": 3.0},
            {"epoch": 2, "train_accuracy": 0.8, "val_accuracy": 0.71, "elapsed": 6.0}]
    row = view.summary_row("r", hist, "finished", {"accuracy": 0.7, "loss": 0.8},
                           {"kind": "mlp", "hidden": [8]})
    assert row["best val acc"] == 0.72 and row["at epoch"] == 1 and row["last val acc"] == 0.71
    assert row["model"] == "MLP 784-8-10, relu" and row["time (s)"] == 6.0
    # a run that stopped on validation loss kept epoch 2 (its lowest loss): that is the row's best
    kept = view.summary_row("r", hist, "finished", None, None, {"best_epoch": 2})
    assert kept["best val acc"] == 0.71 and kept["at epoch"] == 2


def test_comparison_columns_put_test_accuracy_next_to_the_run():
    row = view.summary_row("r", [], "running", None, {"kind": "mlp", "hidden": [8]})
    assert list(row)[:2] == ["run", "test acc"] and list(row)[-1] == "model"
    assert row["test acc"] is None  # shown as "—" by the page (st.dataframe placeholder)


def test_confusion_csv_writes_counts_as_whole_numbers():
    cm = view.confusion({"confusion_matrix": (np.eye(10, dtype=int) * 859 + 1).tolist()})
    rows = view.confusion_csv(cm).splitlines()
    assert rows[1].split(",")[1:3] == ["860", "1"]  # not 860.0000
    norm = view.confusion_csv(view.confusion({"confusion_matrix": np.eye(10).tolist()}, normalise=True),
                              normalised=True)
    assert norm.splitlines()[1].split(",")[1] == "1.0000"


def test_captions_and_columns_promise_only_what_is_drawn():
    """Issue 25, items 4 and 15: no dotted line promised where none is drawn, no empty val columns."""
    train_only = view.curves_caption({"train"})
    assert "dotted" not in train_only and "dashed" not in train_only and "No held-out set" in train_only
    assert "it chose nothing" not in view.curves_caption({"train", "test (watched)"})
    assert "dotted" in view.curves_caption({"train", "test (watched)"})
    assert "dashed" in view.curves_caption({"train", "validation"})
    hist = [{"epoch": 1, "train_loss": 0.5, "train_accuracy": 0.8, "lr": 1e-3, "epoch_seconds": 2.0},
            {"epoch": 2, "train_loss": 0.4, "train_accuracy": 0.85, "lr": 1e-3, "epoch_seconds": 2.1}]
    rows = [view.summary_row("a", hist, "finished", {"accuracy": 0.84, "loss": 0.4}, {"kind": "mlp", "hidden": [8]})]
    assert "best val acc" not in view.summary_columns(rows) and "test acc" in view.summary_columns(rows)
    with_val = [view.summary_row("b", [{**hist[0], "val_accuracy": 0.8}], "finished", None, None)]
    assert "best val acc" in view.summary_columns(rows + with_val)
    table = view.training_by_epoch(hist)
    assert list(table["train accuracy"]) == [0.8, 0.85] and list(table["seconds"]) == [2.0, 2.1]
