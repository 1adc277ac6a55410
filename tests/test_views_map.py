"""fmnist_core.views.map: the map figure (one trace per class, hover "class, #index", the
Predict input as a star), reading a Plotly selection back into test-set indices, and the
grid of selected images — on the real test labels and images."""
from __future__ import annotations

import numpy as np

from fmnist_core.data import CLASSES
from fmnist_core.views import map as view

COLORS = [f"#{k:02x}0000" for k in range(11)]


def _xy(labels):
    rng = np.random.default_rng(0)
    return rng.normal(size=(len(labels), 2)).astype(np.float32)


def test_figure_one_trace_per_class(ds):
    y = ds.y_test
    fig = view.figure(_xy(y), y, COLORS)
    assert [t.name for t in fig.data] == list(CLASSES)
    for k, t in enumerate(fig.data):
        assert (y[np.asarray(t.customdata)] == k).all() and len(t.x) == (y == k).sum()
        assert t.hovertemplate.startswith(f"{CLASSES[k]}, #%{{customdata}}")
    assert sum(len(t.x) for t in fig.data) == 10000
    assert fig.layout.dragmode == "lasso"


def test_figure_with_the_predict_input(ds):
    y = ds.y_test
    fig = view.figure(_xy(y), y, COLORS, point={"xy": np.array([1.0, 2.0]), "label": "Trouser",
                                                "what": "your drawing"})
    star = fig.data[-1]
    assert len(fig.data) == 11 and star.name == view.INPUT_NAME and star.marker.symbol == "star"
    assert (star.x[0], star.y[0]) == (1.0, 2.0) and "Trouser" in star.hovertext[0]


def test_selected_indices(ds):
    y = ds.y_test
    trousers = np.flatnonzero(y == 1)
    sel = {"points": [
        {"curve_number": 1, "point_index": 0, "customdata": int(trousers[0])},
        {"curve_number": 1, "point_index": 3},                                   # no customdata
        {"curve_number": 1, "point_index": 0, "customdata": [int(trousers[0])]},  # a repeat
        {"curve_number": 10, "point_index": 0},                                  # the star
    ]}
    assert view.selected_indices(sel, y) == [int(trousers[0]), int(trousers[3])]
    assert view.selected_indices(None, y) == [] and view.selected_indices({"points": []}, y) == []


def test_selection_grid_and_counts(ds):
    picked = list(range(250, 0, -1))
    grid = view.selection_grid(ds.x_test, picked)
    assert grid.shape == (5 * 56 + 4 * 2, 20 * 56 + 19 * 2)  # capped at 100: 5 rows of 20
    assert (grid[:56, :56] == np.repeat(np.repeat(ds.x_test[1], 2, 0), 2, 1)).all()  # lowest number first
    assert view.selection_grid(ds.x_test, []) is None
    counts = view.class_counts(picked, ds.y_test)
    assert sum(counts.values()) == 250 and list(counts.values()) == sorted(counts.values(), reverse=True)
