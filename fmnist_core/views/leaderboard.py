"""The Leaderboard page, computed: every finished run of the class ranked by test accuracy (ties
by training seconds: who got there faster), with owner, model and the key settings beside it,
and a parallel-coordinates chart of settings against accuracy.

Hidden runs (the teacher's "hide from the board") are left out for students; the teacher's
own view lists them after the ranked runs, unranked and marked, so the ranks, the best run and
the counts are the same on the teacher's screen as on the students'. Runs without a test
accuracy (still training, failed, diverged before a first epoch) are not ranked.

The chart and the table leave out settings every run shares (said once, as "all runs: ..."):
a constant axis carries no comparison and, on a projector, costs the width the table needs.
"""
from __future__ import annotations

import functools
import json
import math
from typing import Any

import pandas as pd

from .labels import describe_changes, model_summary

# the settings shown as columns and as axes of the chart: (column, where in the spec, label)
KEYS = [("optimizer", "train_config", "optimizer"), ("lr", "train_config", "learning rate"),
        ("batch_size", "train_config", "batch size"), ("epochs", "train_config", "epochs"),
        ("weight_decay", "train_config", "L2"), ("augment_shift", "train_config", "shift aug."),
        ("dropout", "model_config", "dropout")]


def _params(spec: dict[str, Any]) -> int | None:
    """Recorded at submit time (spec.RunSpec.to_dict); counted once per architecture for older runs."""
    if spec.get("parameters"):
        return int(spec["parameters"])
    return _count(json.dumps(spec.get("model_config") or {}, sort_keys=True))


@functools.lru_cache(maxsize=512)
def _count(model_config_json: str) -> int | None:
    from ..models import config_from_dict, plan_parameters
    try:
        return plan_parameters(config_from_dict(json.loads(model_config_json)))
    except Exception:  # a run whose config this version cannot build still gets its row
        return None


def board(all_runs: list[dict[str, Any]], show_hidden: bool = False) -> pd.DataFrame:
    """One row per ranked run, best first. Columns: rank, owner, model, changes, parameters,
    the KEYS settings, test_accuracy, train_seconds, status, hidden, run_id, kind."""
    rows = []
    for r in all_runs:
        info = r.get("status_info") or {}
        acc = info.get("test_accuracy")
        if acc is None or (r.get("hidden") and not show_hidden):
            continue
        spec = r.get("config") or {}
        mc = spec.get("model_config") or {}
        row = {"owner": r.get("owner") or "—", "model": model_summary(mc),
               "preset": spec.get("preset") or "custom", "changes": describe_changes(spec, most=4) or "—",
               "parameters": _params(spec), "test_accuracy": float(acc),
               "train_seconds": info.get("train_seconds"), "epochs_run": info.get("epochs_run"),
               "status": r["status"], "hidden": bool(r.get("hidden")), "run_id": r["run_id"],
               "kind": mc.get("kind", "mlp")}
        for key, where, _ in KEYS:
            row[key] = (spec.get(where) or {}).get(key)
        rows.append(row)
    # what the board is about first, so it is visible without scrolling sideways
    cols = ["rank", "owner", "test_accuracy", "train_seconds", "model", "preset", "changes", "parameters",
            *[k for k, _, _ in KEYS], "epochs_run", "status", "hidden", "run_id", "kind"]
    if not rows:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame(rows)
    df["_secs"] = df["train_seconds"].fillna(math.inf)
    # hidden runs last and unranked: the teacher's ranks are the ones the students see
    df = df.sort_values(["hidden", "test_accuracy", "_secs"], ascending=[True, False, True]).drop(columns="_secs")
    shown = int((~df["hidden"]).sum())
    df.insert(0, "rank", pd.array([*range(1, shown + 1), *[None] * (len(df) - shown)], dtype="Int64"))
    return df.reset_index(drop=True)[cols]


def visible(df: pd.DataFrame) -> pd.DataFrame:
    """The rows the students see (the projector view): hidden runs left out."""
    return df[~df["hidden"].astype(bool)].reset_index(drop=True) if len(df) else df


def table(df: pd.DataFrame, teacher: bool = False) -> pd.DataFrame:
    """The board as the page's table: who, how well, how fast, which model and preset, what differs
    (in words), parameters; and for the teacher a "board" column right after the rank that says
    which runs are hidden. The settings themselves are the chart's axes (and the words of "what
    differs"): as columns too they pushed the table past a projector's width."""
    out = df.drop(columns=["run_id", "kind", "status", "epochs_run", *[k for k, _, _ in KEYS]], errors="ignore")
    hidden = out.pop("hidden").astype(bool)
    if teacher:
        out.insert(1, "board", hidden.map({True: "HIDDEN", False: "shown"}))
    return out


def hidden_note(df: pd.DataFrame) -> str:
    """The teacher's line on what the students do not see ("" when nothing is hidden)."""
    rows = df[df["hidden"].astype(bool)] if len(df) else df
    if not len(rows):
        return ""
    runs = "; ".join(f"{o} · {m} · {a:.2%}" for o, m, a in rows[["owner", "model", "test_accuracy"]]
                     .itertuples(index=False))
    return (f"Hidden from students ({len(rows)}): {runs}. Marked HIDDEN below, after the ranked runs; "
            "ranks, the best run and the counts leave them out, as the students' board does.")


def constant_settings(df: pd.DataFrame) -> dict[str, str]:
    """Settings (KEYS and the model kind) that every run on the board shares: column -> "label value",
    for the line "all runs: ..." that replaces their columns and axes."""
    if len(df) < 2:
        return {}
    out = {}
    for key, label in [("kind", "model"), *[(k, lab) for k, _, lab in KEYS]]:
        col = df[key]
        if col.isna().all() or col.astype(str).nunique(dropna=False) == 1:
            out[key] = f"{label} {_value(col.iloc[0])}"
    return out


def _value(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:g}" if isinstance(v, float) else str(v)


def parallel_figure(df: pd.DataFrame):
    """Plotly parallel coordinates: one line per run, coloured by test accuracy; categorical
    settings (optimizer, model kind) become axes with their names as ticks; settings all runs
    share (constant_settings) get no axis."""
    import plotly.graph_objects as go
    dims = []
    same = constant_settings(df)
    for key, label in [("kind", "model"), *[(k, lab) for k, _, lab in KEYS], ("train_seconds", "seconds")]:
        col = df[key]
        if col.isna().all() or key in same:
            continue
        if key == "kind" or (col.dtype == object and not pd.api.types.is_numeric_dtype(col.dropna())):
            cats = sorted(col.fillna("—").astype(str).unique())
            codes = col.fillna("—").astype(str).map({c: i for i, c in enumerate(cats)})
            dims.append(dict(label=label, values=codes, tickvals=list(range(len(cats))), ticktext=cats))
        else:
            vals = pd.to_numeric(col, errors="coerce").fillna(0.0)
            if key == "lr" and (vals > 0).all():
                # learning rates span decades: a log axis, labelled in real values
                logs = vals.map(math.log10)
                ticks = sorted(set(vals))
                dims.append(dict(label=label + " (log)", values=logs, tickvals=[math.log10(t) for t in ticks],
                                 ticktext=[f"{t:g}" for t in ticks]))
            else:
                dims.append(dict(label=label, values=vals))
    acc = df["test_accuracy"] * 100
    dims.append(dict(label="test accuracy %", values=acc, range=[float(acc.min()) - 0.5, float(acc.max()) + 0.5]))
    fig = go.Figure(go.Parcoords(line=dict(color=acc, colorscale="Viridis", showscale=True,
                                           colorbar=dict(title="test %")), dimensions=dims))
    fig.update_layout(height=420, margin=dict(l=60, r=40, t=50, b=30))
    return fig
