"""What the Map page shows: the 2-D map of one layer (fmnist_core.embed) as a Plotly scatter,
one WebGL trace per class, and what a selection on it picks.

  * figure            the map: one Scattergl trace per class (coloured by class, hover
                      "class, #index"), plus the current Predict input as a star, or a
                      class of your own's pictures as stars (picture_stars)
  * selected_indices  a plotly_chart selection event -> the test-set indices selected
  * selection_grid    those test images as one picture (at most GRID_MAX of them)

Left out: the computing (fmnist_core.embed) and every widget (pages/map.py).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..data import CLASSES
from .shared import tile_grid

GRID_MAX = 100      # images shown for a selection (a lasso over a cluster takes thousands)
GRID_COLS = 20
INPUT_NAME = "your input"


def figure(xy: np.ndarray, labels: np.ndarray, colors: Sequence[str], title: str = "",
           point: dict[str, Any] | None = None, stars: dict[str, Any] | None = None):
    """The map: trace k holds class k's points (customdata = test-set index). `point`, when
    given ({"xy": (2,), "label": predicted class name, "what": str}), is one more trace: a
    large star, drawn last so it sits on top; `stars` ({"xy": (n, 2), "name", "text": n
    hovers}: picture_stars) one trace of several."""
    import plotly.graph_objects as go
    labels = np.asarray(labels)
    fig = go.Figure()
    for k, name in enumerate(CLASSES):
        idx = np.flatnonzero(labels == k)
        fig.add_trace(go.Scattergl(
            x=xy[idx, 0], y=xy[idx, 1], mode="markers", name=name, customdata=idx,
            marker=dict(size=4, color=colors[k % len(colors)], opacity=0.75),
            hovertemplate=f"{name}, #%{{customdata}}<extra></extra>"))
    if point is not None:
        text = f"{INPUT_NAME}: {point['what']}" + (f" → {point['label']}" if point.get("label") else "")
        fig.add_trace(go.Scattergl(
            x=[float(point["xy"][0])], y=[float(point["xy"][1])], mode="markers", name=INPUT_NAME,
            marker=dict(size=22, symbol="star", color="black", line=dict(width=2, color="white")),
            hovertext=[text], hoverinfo="text"))
    if stars is not None:
        sxy = np.asarray(stars["xy"], dtype=np.float64).reshape(-1, 2)
        fig.add_trace(go.Scattergl(
            x=sxy[:, 0], y=sxy[:, 1], mode="markers", name=stars["name"],
            marker=dict(size=16, symbol="star", color="black", line=dict(width=1.5, color="white")),
            hovertext=list(stars["text"]), hoverinfo="text"))
    fig.update_layout(title=title or None, dragmode="lasso", legend=dict(itemsizing="constant"))
    fig.update_xaxes(showticklabels=False, title=None)
    fig.update_yaxes(showticklabels=False, title=None, scaleanchor="x", scaleratio=1)
    return fig


def picture_stars(xy, held_out: Sequence[bool], name: str) -> dict[str, Any]:
    """A class of your own's pictures for `figure`: numbered as the page shows them, and
    whether each was held out (never trained on) or trained on."""
    return {"xy": np.asarray(xy), "name": f"your “{name}” pictures",
            "text": [f"your picture {i + 1} ({'held out' if h else 'trained on'})" for i, h in enumerate(held_out)]}


def selected_indices(selection: dict | None, labels: np.ndarray) -> list[int]:
    """Test-set indices of the selected points, in selection order, without repeats. Reads each
    point's customdata (its index), or falls back to trace number + point index (trace k is
    class k); the Predict input's star (a trace past the ten classes) is not a test image."""
    if not selection:
        return []
    labels = np.asarray(labels)
    per_class = {k: np.flatnonzero(labels == k) for k in range(len(CLASSES))}
    out, seen = [], set()
    for p in selection.get("points", []) or []:
        curve = p.get("curve_number")
        if curve is None or curve >= len(CLASSES):
            continue
        cd = p.get("customdata")
        if isinstance(cd, (list, tuple)):
            cd = cd[0] if cd else None
        if cd is not None:
            i = int(cd)
        else:
            j = p.get("point_index", p.get("point_number"))
            if j is None or j >= len(per_class[curve]):
                continue
            i = int(per_class[curve][j])
        if i not in seen:
            seen.add(i)
            out.append(i)
    return out


def selection_grid(images: np.ndarray, indices: Sequence[int], cols: int = GRID_COLS) -> np.ndarray | None:
    """The selected test images with the GRID_MAX lowest numbers as one uint8 picture (2x
    upscaled), or None."""
    shown = sorted(indices)[:GRID_MAX]  # in test-set order: a mix of the classes selected
    if not shown:
        return None
    return tile_grid(np.asarray(images)[shown], cols=min(cols, len(shown)), factor=2, gap=2)


def class_counts(indices: Sequence[int], labels: np.ndarray) -> dict[str, int]:
    """How many of the selected images belong to each class, largest first (classes with none left out)."""
    counts = np.bincount(np.asarray(labels)[list(indices)].astype(np.int64), minlength=len(CLASSES))
    return {CLASSES[k]: int(counts[k]) for k in np.argsort(-counts, kind="stable") if counts[k]}
