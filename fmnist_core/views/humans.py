"""The "Beat the network" page, computed: how a student's image is shown (28x28 as the network
sees it, enlarged pixel for pixel, and an optional larger smoothed view), what names the class
sees (none but "you" unless the teacher turns names on), the tables, the accuracy chart, the two
confusion matrices and the hardest images' captions. The figures themselves are
fmnist_core/humans.py's, from the stored answers.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..data import CLASSES
from ..humans import ZALANDO_HUMAN_ACCURACY
from .shared import upscale

PIXEL_FACTOR = 8     # 28 -> 224 px: every pixel the network gets, as a visible square
SMOOTH_FACTOR = 12   # 28 -> 336 px, bilinear: what a person would see on a larger photo


def pixels(img: np.ndarray) -> np.ndarray:
    return upscale(img, PIXEL_FACTOR)


def smooth(img: np.ndarray) -> np.ndarray:
    """The same 28x28 image larger and smoothed (bilinear): no new detail, only softer edges."""
    from PIL import Image
    size = img.shape[0] * SMOOTH_FACTOR
    return np.asarray(Image.fromarray(np.asarray(img, dtype=np.uint8)).resize((size, size), Image.BILINEAR))


def names(students: list[dict[str, Any]], me_id: str, show_names: bool) -> list[str]:
    """What the class sees for each student: their name when the teacher allows it, else
    "student k" (in the order they first answered); always "you" for this browser's student."""
    out = []
    for k, s in enumerate(students, 1):
        label = s["name"] if show_names and s["name"] else f"student {k}"
        out.append(f"you ({s['name'] or label})" if s["owner_id"] == me_id else label)
    return out


def students_table(figs: dict[str, Any], labels: list[str], network: str) -> pd.DataFrame:
    rows = [{"student": name, "images labelled": s["answered"], "accuracy": f"{s['accuracy']:.1%}",
             f"{network} on the same images": f"{s['network_accuracy']:.1%}"}
            for name, s in zip(labels, figs["students"])]
    return pd.DataFrame(rows)


def accuracy_figure(figs: dict[str, Any], labels: list[str], network: str):
    """Each student's accuracy as a bar; the class mean, the majority vote, the network on the
    same images and Zalando's 83.5% as lines across."""
    import plotly.graph_objects as go
    acc = [s["accuracy"] * 100 for s in figs["students"]]
    fig = go.Figure(go.Bar(x=labels, y=acc, name="students", marker_color="#88CCEE",
                           text=[f"{a:.0f}%" for a in acc], textposition="outside"))
    lines = [("class mean", figs["mean"], "#332288", "dot"), ("majority vote", figs["majority"], "#117733", "dash"),
             (network, figs["network"], "#CC6677", "solid"),
             ("Zalando's people", ZALANDO_HUMAN_ACCURACY, "#999933", "longdash")]
    for name, v, colour, dash in lines:
        if v is not None:
            fig.add_hline(y=v * 100, line=dict(color=colour, dash=dash, width=3),
                          annotation_text=f"{name} {v:.1%}", annotation_position="top left")
    fig.update_layout(yaxis=dict(title="accuracy %", range=[0, 112]), showlegend=False, height=420,
                      margin=dict(l=60, r=20, t=40, b=60))
    return fig


def confusion_figure(cm: np.ndarray, title: str):
    """Rows = true class, in % of the row (people answered more images than the network saw:
    the shares compare, the counts do not); each cell's count as its text."""
    import plotly.graph_objects as go
    cm = np.asarray(cm)
    rows = cm.sum(1, keepdims=True)
    share = np.where(rows > 0, cm / np.maximum(rows, 1) * 100, np.nan)
    short = [c.split("/")[0] for c in CLASSES]
    fig = go.Figure(go.Heatmap(z=share, x=short, y=short, colorscale="Blues", zmin=0, zmax=100,
                               text=[[str(v) if v else "" for v in r] for r in cm], texttemplate="%{text}",
                               colorbar=dict(title="% of row"),
                               hovertemplate="true %{y}, answered %{x}: %{z:.0f}% of the row<extra></extra>"))
    fig.update_layout(title=title, height=460, margin=dict(l=80, r=20, t=60, b=80),
                      xaxis=dict(title="answered"), yaxis=dict(title="true class", autorange="reversed"))
    return fig


def confusion_note(cm_humans: np.ndarray, cm_network: np.ndarray) -> str:
    """The classic question answered from the two matrices: Shirt taken for T-shirt/top."""
    def share(cm):
        row = np.asarray(cm)[6].sum()
        return (np.asarray(cm)[6, 0] / row) if row else None
    h, n = share(cm_humans), share(cm_network)
    if h is None:
        return "No Shirt labelled yet."
    tail = f", the network {n:.0%} of them" if n is not None else ""
    return f"The class called {h:.0%} of the Shirts a T-shirt/top{tail}."


def hard_caption(item: dict[str, Any], by: str) -> str:
    true = CLASSES[item["label"]]
    if by == "humans":
        return (f"#{item['index']} {true}: {item['wrong_share']:.0%} of {item['answers']} wrong, "
                f"mostly {CLASSES[item['common_answer']]}; network: {CLASSES[item['network']]}")
    return (f"#{item['index']} {true}: network says {CLASSES[item['network']]} "
            f"(p(true) {item['p_true']:.0%}); class wrong {item['wrong_share']:.0%}")


def my_table(result: dict[str, Any]) -> pd.DataFrame:
    """One row per image this student labelled: the true class, their answer, each network's,
    with a mark where the answer is wrong."""
    rows = []
    for r in result["rows"]:
        row = {"test image": r["index"], "true class": CLASSES[r["label"]]}
        for who in ["you", *result["networks"]]:
            ok = r[who] == r["label"]
            row[who] = CLASSES[r[who]] + ("" if ok else " ✗")
        rows.append(row)
    return pd.DataFrame(rows)
