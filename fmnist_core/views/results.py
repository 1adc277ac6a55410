"""What the Results page shows: runs and shipped models compared, then one of them closely.

  * comparison    best and final numbers per run, its history as a table
  * how it learned  the diagnosis in plain words (fmnist_core.diagnose), each epoch's
                  confusion matrix on the held-out split (validation, or the test set watched
                  by `make models`) and which classes were learned first / never untangled
  * one model     confusion matrix (counts, row-normalised) as a Plotly heatmap (also the
                  class-of-your-own page's, 11 classes), as CSV and as a PNG drawn with Pillow, the per-class report, the test images behind one cell, and the
                  test-set predictions and metrics of a checkpoint

Left out: the model list with each run's short name, and the curves as a long table
(shared: other pages use them too).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data import CLASSES, FashionMNIST
from .shared import describe_model


# --- comparison ----------------------------------------------------------------------------

def history_frame(history: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(history)


def training_by_epoch(history: list[dict[str, Any]]) -> pd.DataFrame:
    """epoch, train accuracy, train loss, learning rate, seconds: a run's training, epoch by epoch."""
    cols = {"epoch": "epoch", "train_accuracy": "train accuracy", "train_loss": "train loss",
            "lr": "learning rate", "epoch_seconds": "seconds"}
    return pd.DataFrame([{name: h.get(k) for k, name in cols.items()} for h in history], columns=list(cols.values()))


def summary_row(name: str, history: list[dict], status: str, test: dict | None,
                model_config: dict | None, info: dict | None = None) -> dict[str, Any]:
    """Best and final numbers of one run (or shipped model) for the comparison table, the
    columns in the order a reader needs them: the run, then its test accuracy (what the class
    compares), then how it got there; the long model description last."""
    info = info or {}
    vals = [h for h in history if h.get("val_accuracy") is not None]
    # the epoch whose checkpoint was kept, as the trainer said: on validation accuracy it is the
    # highest, but a run that stopped on validation loss kept the epoch of the lowest loss
    kept = [h for h in vals if h.get("epoch") == info.get("best_epoch")]
    best = kept[0] if kept else (max(vals, key=lambda h: h["val_accuracy"]) if vals else None)
    last = history[-1] if history else {}
    test = test or {}
    secs = info.get("train_seconds") or (last.get("elapsed") if last else None)
    return {"run": name, "test acc": test.get("accuracy", info.get("test_accuracy")),
            "best val acc": best["val_accuracy"] if best else info.get("best_val_accuracy"),
            "at epoch": best["epoch"] if best else info.get("best_epoch"),
            "epochs": len(history) or info.get("epochs_run"),
            "last train acc": last.get("train_accuracy"), "last val acc": last.get("val_accuracy"),
            "test loss": test.get("loss", info.get("test_loss")),
            "time (s)": round(secs, 1) if isinstance(secs, (int, float)) else None,
            "status": status, "model": describe_model(model_config)}


def curves_caption(splits: set[str]) -> str:
    """What the lines of the loss/accuracy charts are, naming only the splits that are drawn."""
    parts = ["Solid line, filled dots: training set (between the dots, the running mean of the epoch "
             "so far, restarted at each epoch: the gap before each epoch's first point)"]
    if "validation" in splits:
        parts.append("dashed line, open dots: validation set (held out from training)")
    if "test (watched)" in splits:
        parts.append("dotted: the test set, scored at each epoch end for models trained without a "
                     "validation split, for this chart only (no setting was chosen by it)")
    gap = " A widening gap is overfitting." if splits & {"validation", "test (watched)"} else (
        " No held-out set was scored during training, so overfitting cannot be seen here.")
    return " · ".join(parts) + "." + gap


def summary_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The comparison table's columns: those of summary_row, without the validation columns
    when no compared model has a validation score (a column of dashes says nothing)."""
    cols = list(rows[0]) if rows else []
    if not any(r.get("best val acc") is not None or r.get("last val acc") is not None for r in rows):
        cols = [c for c in cols if c not in ("best val acc", "at epoch", "last val acc")]
    return cols


# --- how it learned --------------------------------------------------------------------------

LEARNED = 0.80  # a class counts as learned once its recall on the held-out split reaches this


def diagnosis(src: dict[str, Any], test: dict | None) -> list:
    """The plain-words findings (diagnose.Finding) for a model-list entry and its test metrics."""
    from ..diagnose import diagnose
    info = src.get("info") or {}
    acc = (test or {}).get("accuracy", info.get("test_accuracy"))
    status = "finished" if src.get("status") == "shipped" else src.get("status", "finished")
    return diagnose(src.get("history") or [], acc, status, (src.get("train_config") or {}).get("lr"))


def epoch_confusions(history: list[dict[str, Any]]) -> tuple[str, dict[int, np.ndarray]]:
    """(split name, {epoch: (10, 10) counts}) from the rows' val_confusion, else the watched
    test set's (watch_confusion); ("", {}) when the run stored neither."""
    for key, name in (("val_confusion", "validation"), ("watch_confusion", "test (watched)")):
        cms = {int(h["epoch"]): np.asarray(h[key], dtype=np.float64) for h in history if h.get(key)}
        if cms:
            return name, cms
    return "", {}


def recall_by_epoch(cms: dict[int, np.ndarray]) -> pd.DataFrame:
    """Long table epoch, class, recall (the diagonal of each row-normalised matrix)."""
    rows = [{"epoch": e, "class": c, "recall": float(cm[i, i] / max(cm[i].sum(), 1))}
            for e, cm in sorted(cms.items()) for i, c in enumerate(CLASSES)]
    return pd.DataFrame(rows, columns=["epoch", "class", "recall"])


def learning_story(cms: dict[int, np.ndarray]) -> list[str]:
    """Which classes were learned first and which were never untangled, in sentences."""
    if not cms:
        return []
    rec = recall_by_epoch(cms)
    first, last = min(cms), max(cms)
    learned_at = {c: g.loc[g["recall"] >= LEARNED, "epoch"].min() for c, g in rec.groupby("class", sort=False)}
    end = rec[rec["epoch"] == last].set_index("class")["recall"]
    never = sorted((c for c in CLASSES if end[c] < LEARNED), key=lambda c: end[c])
    early = [c for c in CLASSES if learned_at[c] == first and c not in never]
    out = []
    if early:
        out.append(f"Learned first (recall ≥ {LEARNED:.0%} after epoch {first}): {', '.join(early)}.")
    later = sorted((c for c in CLASSES if c not in early and c not in never), key=lambda c: learned_at[c])
    if later:
        out.append("Learned later: " + ", ".join(f"{c} (epoch {int(learned_at[c])})" for c in later) + ".")
    if never:
        cm = cms[last]
        worst = []
        for c in never:
            i = CLASSES.index(c)
            row = cm[i].copy()
            row[i] = -1
            j = int(row.argmax())
            worst.append(f"{c} ({end[c]:.0%}, most often taken for {CLASSES[j]})")
        out.append(f"Never untangled (recall still below {LEARNED:.0%} at the last epoch): {', '.join(worst)}.")
    return out


# --- one model -----------------------------------------------------------------------------

def confusion(metrics: dict[str, Any], normalise: bool = False) -> np.ndarray:
    """(10, 10): rows true class, columns predicted; row-normalised = recall per row."""
    cm = np.asarray(metrics["confusion_matrix"], dtype=np.float64)
    if normalise:
        cm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    return cm


def confusion_csv(cm: np.ndarray, normalised: bool = False) -> str:
    """Counts as whole numbers (859, not 859.0000); a row-normalised matrix with 4 decimals."""
    cm = np.asarray(cm)
    df = pd.DataFrame(cm if normalised else np.round(cm).astype(np.int64),
                      index=[f"true {c}" for c in CLASSES], columns=[f"pred {c}" for c in CLASSES])
    return df.to_csv(float_format="%.4f" if normalised else None)


def confusion_figure(counts: np.ndarray, norm: bool, names: list[str] | None = None):
    """A confusion-matrix heatmap (Plotly) of counts (or row shares) and its cell texts; `names`
    label rows and columns (the ten classes unless given: a class of your own adds an 11th)."""
    import plotly.graph_objects as go
    counts = np.asarray(counts, dtype=np.float64)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    names = list(names or CLASSES)
    text = [[f"{v:.2f}" if norm else f"{int(v)}" for v in row] for row in (share if norm else counts)]
    # colour = share of the row, square-rooted: a 3% confusion is still visibly blue
    fig = go.Figure(go.Heatmap(z=np.sqrt(share), x=names, y=names, colorscale="Blues", showscale=False,
                               zmin=0, zmax=1, text=text, texttemplate="%{text}", textfont=dict(size=15),
                               hoverinfo="skip"))
    fig.update_yaxes(range=[len(names) - 0.5, -0.5], title="true class")
    fig.update_xaxes(range=[-0.5, len(names) - 0.5], title="predicted class", tickangle=-45)
    return fig, text


def _font(size: int):
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the tiny bitmap font
        return ImageFont.load_default()


def confusion_png(cm: np.ndarray, title: str = "", normalised: bool = False, cell: int = 64) -> bytes:
    """The confusion matrix as a PNG drawn with Pillow (no kaleido / matplotlib needed)."""
    from PIL import Image, ImageDraw
    cm = np.asarray(cm, dtype=np.float64)
    n = len(cm)
    font, small = _font(16), _font(14)
    label_h = 110  # room for the sideways column labels
    title_h = 36 if title else 8
    left, top = 130, title_h + label_h
    w, h = left + n * cell + 20, top + n * cell + 50
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    if title:
        draw.text((10, 8), title, fill="black", font=_font(20))
    # diagonal cells dominate: colour by the share of the row so mistakes stay visible
    frac = cm / np.maximum(cm.max(), 1e-12) if normalised else cm / np.maximum(cm.sum(1, keepdims=True), 1)
    lo, hi = np.array([247, 251, 255]), np.array([8, 48, 107])
    for i in range(n):
        for j in range(n):
            f = float(np.clip(frac[i, j], 0, 1)) ** 0.6
            colour = tuple(int(v) for v in lo + (hi - lo) * f)
            x0, y0 = left + j * cell, top + i * cell
            draw.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=colour, outline=(200, 200, 200))
            txt = f"{cm[i, j]:.2f}" if normalised else f"{int(cm[i, j])}"
            tw = draw.textlength(txt, font=small)
            draw.text((x0 + (cell - tw) / 2, y0 + cell / 2 - 8), txt, font=small,
                      fill="white" if f > 0.55 else "black")
    for i, name in enumerate(CLASSES[:n]):
        tw = draw.textlength(name, font=small)
        draw.text((left - tw - 8, top + i * cell + cell / 2 - 8), name, font=small, fill="black")
        # column labels written sideways: draw on a strip, rotate it, paste it
        strip = Image.new("RGB", (label_h - 6, cell), "white")
        ImageDraw.Draw(strip).text((4, cell / 2 - 8), name, font=small, fill="black")
        strip = strip.rotate(90, expand=True)  # the text's start ends up at the bottom, by the grid
        img.paste(strip, (left + i * cell, title_h))
    draw.text((left, top + n * cell + 12), "columns: predicted class · rows: true class",
              font=font, fill="black")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def per_class_frame(metrics: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(metrics["per_class"])[["class", "precision", "recall", "f1", "support"]]


def cell_indices(y_true: np.ndarray, y_pred: np.ndarray, true_class: int, pred_class: int) -> np.ndarray:
    """Test-set indices whose true class is true_class and prediction pred_class."""
    return np.flatnonzero((np.asarray(y_true) == true_class) & (np.asarray(y_pred) == pred_class))


def test_predictions(checkpoint: str | Path, ds: FashionMNIST) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class, confidence) for the 10,000 test images, on the CPU."""
    from ..evaluate import predict_logits
    from ..models import load_model
    from ..heads import cached_test_logits
    model = load_model(checkpoint)
    logits = cached_test_logits(model)  # a head: its cached test features, not the backbone again
    probs = (logits if logits is not None else predict_logits(model, ds.x_test, batch_size=2000)).softmax(1)
    conf, pred = probs.max(1)
    pred, conf = pred.numpy().astype(np.int64), conf.numpy()
    pred.setflags(write=False)
    conf.setflags(write=False)
    return pred, conf


def evaluate_checkpoint(checkpoint: str | Path, ds: FashionMNIST) -> dict[str, Any]:
    """Test metrics of a checkpoint (for shipped models, which carry no metrics.json)."""
    from ..evaluate import evaluate
    from ..models import load_model
    return evaluate(load_model(checkpoint), ds.x_test, ds.y_test)
