"""Shared by the Predict and "Inside the network" pages: the model picker and the cached models.

A model is loaded once per server process and checkpoint version — st.cache_resource keyed
by the file's path and mtime (common.mtime), so a retrained file is picked up — and the same
objects are handed to every session: treat them as read-only (fmnist_core.views never
changes them).

The chosen model is kept in plain session state (`nv_model`), not only in the widget:
Streamlit forgets a widget's value when another page is shown, and both pages share
the choice.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from fmnist_core import runs
from fmnist_core.views import shared
from fmnist_core.errors import WorkbenchError
from ui import common, nav

CHOICE = "nv_model"  # the chosen model's key, shared by Predict and Inside


@st.cache_resource(show_spinner="Loading the model…", max_entries=8)
def _pair(path: str, version: float):
    return shared.load_pair(path)


def pair(path: str | Path):
    """(PyTorch model, NumPy twin) of a checkpoint, loaded once per version. Read-only."""
    return _pair(str(path), common.mtime(path))


def choices() -> dict[str, dict[str, Any]]:
    return shared.model_choices(common.model_list())


def _remember(widget_key: str) -> None:
    st.session_state[CHOICE] = st.session_state[widget_key]


def pick(widget_key: str) -> dict[str, Any] | None:
    """The top row of Predict and Inside: the model selectbox (keyed `widget_key`) and, beside
    it, one line on the chosen model. Returns the chosen entry with its loaded "model" and
    "net", or None after saying why there is nothing to choose or load."""
    where, beside = st.columns([3, 2], vertical_alignment="bottom")
    options = choices()
    if not options:
        where.info("No trained model yet: the shipped models (artifacts/models/mlp.pt and cnn.pt) "
                   "are not there — `make models` trains them — and no run has finished. "
                   "Train one on the Train page; it appears here when it finishes.")
        where.page_link(nav.page("train"), label="Train a model", icon=":material/model_training:")
        return None
    if st.session_state.get(CHOICE) not in options:
        st.session_state[CHOICE] = shared.default_choice(options)
    st.session_state[widget_key] = st.session_state[CHOICE]
    where.selectbox("Model", list(options), key=widget_key, format_func=lambda k: options[k]["label"],
                    on_change=_remember, args=(widget_key,),
                    help="The shipped models, or any finished run from the Train page.")
    entry = {**options[st.session_state[widget_key]], "key": st.session_state[widget_key]}
    try:
        entry["model"], entry["net"] = pair(runs.ensure_checkpoint(entry["checkpoint"]))
    except (WorkbenchError, OSError) as exc:
        where.error(f"Cannot load this model: {shared.for_browser(str(exc))}")
        return None
    beside.caption(_describe(entry))
    return entry


def _describe(entry: dict[str, Any]) -> str:
    """One caption line: architecture, parameters, test accuracy when the checkpoint has it."""
    model = entry["model"]
    acc = (getattr(model, "metrics", None) or {}).get("test_accuracy")
    n = sum(p.numel() for p in model.parameters())
    return (f"{shared.describe_model(entry['model_config'])} · {n:,} parameters"
            + (f" · test accuracy {acc:.1%}" if isinstance(acc, (int, float)) else ""))
