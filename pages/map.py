"""Map: what a network learned, as a picture — one layer's activations for the 10,000 test
images projected to 2-D (PCA, t-SNE or UMAP), coloured by class. Hover names a point's class
and test-set number; a click, box or lasso selection shows those images; the last Predict
input is placed on the map as a star.

The maps come from fmnist_core.embed: the shipped models' main layers from the maps shipped
beside them (instant), the rest computed once per checkpoint, layer and method by a
shared analysis job of the dispatcher (fmnist_core.analysis: never in the web process, and a
second student asking joins the running job), then read from artifacts/cache/embed/; the
figure and the selection from fmnist_core.views.map.
"""
from __future__ import annotations

import numpy as np
import streamlit as st

from fmnist_core import embed
from fmnist_core.data import CLASSES
from fmnist_core.errors import WorkbenchError
from fmnist_core.views import map as view, shared
from fmnist_core.views.format import plural
from ui import common, jobs, model_picker

ABOUT = {"pca": "PCA: the two directions along which this layer's values vary most — a linear "
                "shadow of the layer; computed in seconds.",
         "tsne": "t-SNE (openTSNE): keeps each image's nearest neighbours near; distances between "
                 "clusters and cluster sizes mean little. Computed once (the shipped models' main "
                 "layers come with theirs).",
         "umap": "UMAP (umap-learn): keeps neighbours near and more of the global layout than "
                 "t-SNE. Computed once (the shipped models' main layers come with theirs)."}


def _init_state() -> None:
    common.init_state({"mp_method": "pca"})


@st.cache_data(show_spinner=False, max_entries=64)
def _place(path: str, version: float, layer: str, method: str, x: np.ndarray, _model) -> dict:
    return embed.place(path, layer, method, x, model=_model)


def _compute(entry, layer: str, method: str) -> dict | None:
    """The map from the cache, or None while a shared job computes it (its progress is shown)."""
    what = f"{embed.METHOD_NAMES[method]} map of {layer}"
    if not jobs.ready("map", str(entry["checkpoint"]), {"layer": layer, "method": method}, what, key="mp_job"):
        return None
    ds = common.dataset()
    return embed.embed(entry["checkpoint"], layer, method, ds.x_test, ds.y_test, model=entry["model"])


def _input_point(entry, layer: str, method: str) -> dict | None:
    last = st.session_state.get("pr_last")
    if last is None:
        return None
    from fmnist_core.predict import predict_array
    x = shared.as_input(last["x"])
    with st.spinner(f"Placing your input on the {embed.METHOD_NAMES[method]} map…"):
        placed = _place(str(entry["checkpoint"]), common.mtime(entry["checkpoint"]), layer, method, x, entry["model"])
    return {**placed, "what": last["what"], "label": predict_array(entry["model"], x)["label"]}


def page() -> None:
    _init_state()
    st.title("Map of what the network learned")
    st.caption("Every one of the 10,000 test images as a dot: where one layer of the network puts it, "
               "squashed to two dimensions. Images the layer finds alike land close together. Hover a "
               "dot for its class and number; click, or drag a box or a lasso (the chart's toolbar), "
               "to see the images you picked.")
    entry = model_picker.pick("mp_model")
    if entry is None:
        return
    names = embed.layer_names(entry["model"])
    if st.session_state.get("mp_layer") not in names:
        st.session_state.mp_layer = embed.default_layer(entry["model"])
    a, b = st.columns([1, 2], vertical_alignment="bottom")
    a.selectbox("Layer", names, key="mp_layer",
                help="Any layer of the model; the default is the one before the output, whose values the "
                     "classifier reads.")
    b.radio("Method", embed.METHODS, key="mp_method", horizontal=True, format_func=embed.METHOD_NAMES.get)
    layer, method = st.session_state.mp_layer, st.session_state.mp_method
    st.caption(ABOUT[method])
    if method != "pca" and not embed.is_cached(entry["checkpoint"], layer, method) and not jobs.under_way(
            "map", str(entry["checkpoint"]), {"layer": layer, "method": method}):
        st.info(f"The {embed.METHOD_NAMES[method]} map of {layer} is not made yet for this model: about a "
                "minute on this machine, then instant for everyone.")
        if not st.button(f"Make the {embed.METHOD_NAMES[method]} map", icon=":material/scatter_plot:",
                         key="mp_go"):
            return
    try:
        result = _compute(entry, layer, method)
        if result is None:
            return
        point = _input_point(entry, layer, method)
    except WorkbenchError as exc:
        st.error(shared.for_browser(str(exc)))
        return
    ds = common.dataset()
    _chart(entry, result, point, ds)


def _chart(entry, result: dict, point: dict | None, ds) -> None:
    layer, method = result["layer"], result["method"]
    title = f"{embed.METHOD_NAMES[method]} of {layer} ({result['layer_width']:,} values per image)"
    fig = view.figure(result["xy"], result["labels"], common.COLORS, point=point)
    event = st.plotly_chart(common.style(fig, height=640, top=70), theme=None, on_select="rerun",
                            selection_mode=("points", "box", "lasso"),
                            key=f"mp_chart_{result['checkpoint_hash']}_{layer}_{method}")
    notes = [title]
    if result["layer_width"] > result["width"]:
        notes.append(f"too wide to keep whole for 10,000 images: projected at random (sparse, seeded) to "
                     f"{result['width']:,} values first, which keeps distances roughly")
    if method == "pca" and result["explained"]:
        notes.append(f"the two axes hold {sum(result['explained']):.0%} of the layer's variance")
    elif result["width"] > result["base_dims"]:
        notes.append(f"computed on the layer's first {result['base_dims']} PCA components")
    if point is not None:
        how = {"nearest neighbours": "placed among its 15 nearest test images (the fitted UMAP is "
                                     "not in this server's memory)"}.get(point["placement"], "")
        notes.append(f"★ your Predict input ({point['what']}), predicted {point['label']}"
                     + (f"; {how}" if how else ""))
    notes.append("made now" if not result["cached"] else "shipped with the model" if result.get("shipped")
                 else "from the cache")
    st.caption(" · ".join(notes))
    picked = view.selected_indices(event.selection if event else None, result["labels"])
    if not picked:
        st.caption("Nothing selected: drag a lasso or a box over the dots, or click one.")
        return
    counts = view.class_counts(picked, result["labels"])
    shown = min(len(picked), view.GRID_MAX)
    st.subheader(f"{plural(len(picked), 'image')} selected")
    st.caption(" · ".join(f"{c}: {n}" for c, n in counts.items())
               + (f" — showing the {shown} with the lowest test numbers" if shown < len(picked) else ""))
    st.image(view.selection_grid(ds.x_test, picked), caption=None)
    if len(picked) == 1:
        i = picked[0]
        st.caption(f"Test image #{i}, a {CLASSES[int(ds.y_test[i])]}.")


if __name__ == "__main__":  # run as a script by Streamlit's pages/ discovery: see ui/__init__.py
    common.run_app()
