"""Inside the network: how many parameters each layer has, what the first layer looks for,
what every layer makes of one input, and whether the hand-written NumPy twin computes the
same numbers as PyTorch — for one image layer by layer, and for all 10,000 test images.

The numbers come from fmnist_core.views.inside (one input through both implementations,
pictures of weights and feature maps) and fmnist_core.twin.compare (the whole test set: a
shared analysis job of the dispatcher, so a class pressing the button at once computes it once,
off the web server).
"""
from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from fmnist_core import analysis
from fmnist_core.views import inside as view, shared
from fmnist_core.data import CLASSES
from fmnist_core.views.format import plural
from ui import common, jobs, model_picker

UNITS = (16, 32, 48, 64)  # first-layer units shown for an MLP
PICTURE_FROM = {"torch": "PyTorch", "manual": "NumPy twin"}
MAX_MAPS = 32  # feature maps shown per layer


def _init_state() -> None:
    common.init_state({"in_units": 32, "in_input": "test", "in_idx": 0, "in_from": "torch",
                       "in_compare": {}})


def page() -> None:
    _init_state()
    st.title("Inside the network")
    st.caption("Open a trained network up: its layers and their parameters, the patterns its first "
               "layer has learned, what each layer makes of one image — and the hand-written NumPy "
               "twin computing the very same numbers as PyTorch.")
    entry = model_picker.pick("in_model")
    if entry is None:
        return

    _parameters(entry)
    st.divider()
    _first_layer(entry)
    st.divider()
    _layers(entry)
    st.divider()
    _whole_test_set(entry)


# --- parameters ---------------------------------------------------------------------------

def _parameters(entry) -> None:
    st.subheader("Layers and parameters")
    table = common.layer_table(json.dumps(entry["model_config"], sort_keys=True))
    left, right = st.columns([3, 1], gap="large")
    left.dataframe(table, hide_index=True, width="stretch", height="content",
                   column_config={"parameters": st.column_config.NumberColumn(format="localized")})
    s = view.parameter_summary(table)
    right.metric("Parameters in total", f"{s['total']:,}")
    if s["largest"]:
        right.metric(f"In the largest layer ({s['largest']})", f"{s['share']:.0%}")
    right.caption("A fully connected layer has inputs × outputs weights plus one bias per output; "
                  "a conv layer only kernel × kernel × channels per filter, whatever the image size.")


# --- first-layer weights -------------------------------------------------------------------

def _first_layer(entry) -> None:
    st.subheader("What the first layer looks for")
    if entry["arch"] == "mlp":
        st.select_slider("Units shown", UNITS, key="in_units")
    first = view.first_layer(entry["model"], units=st.session_state.in_units)
    if first["kind"] == "conv":
        w = first["weights"]
        st.image(view.weight_grid(w, cols=min(len(w), 16), target=112 if len(w) <= 8 else 64),
                 caption=f"all {plural(first['total'], 'filter')} of {first['layer']} ({w.shape[1]}×{w.shape[2]} each)")
        st.caption("Each square is one filter sliding over the image: red weights respond to light "
                   "pixels there, blue ones to dark — edge, stripe and blob detectors. Each filter "
                   "has its own colour scale.")
    else:
        st.image(view.weight_grid(first["weights"], cols=8, target=112),
                 caption=f"the first {first['shown']} of {first['total']} units of {first['layer']}: "
                         "each unit's 784 input weights laid out as the 28×28 image")
        st.caption("Red pixels push a unit's output up when they are light, blue ones push it down: "
                   "many units look like blurry garment outlines (sleeves, trouser legs, soles). "
                   "Each unit has its own colour scale; white is zero.")


# --- one input, layer by layer ------------------------------------------------------------

def _random_test_image() -> None:
    st.session_state.in_idx = shared.random_test_index(common.dataset().y_test)


def _input():
    """(28x28 float image, what it is, true class or None)."""
    last = st.session_state.get("pr_last")
    options = ["test", "predict"] if last is not None else ["test"]
    if st.session_state.in_input not in options:
        st.session_state.in_input = "test"
    st.radio("Input", options, key="in_input", horizontal=True,
             format_func=lambda o: "a test image" if o == "test" else f"the last Predict input ({last['what']})")
    if st.session_state.in_input == "predict":
        return last["x"], last["what"], last["truth"]
    ds = common.dataset()
    a, b = st.columns([3, 1], vertical_alignment="bottom")
    a.number_input(f"Test image number (0–{len(ds.y_test) - 1:,})", min_value=0, max_value=len(ds.y_test) - 1,
                   step=1, key="in_idx")
    b.button("Random", icon=":material/shuffle:", key="in_random", on_click=_random_test_image, width="stretch")
    i = int(st.session_state.in_idx)
    return shared.as_input(ds.x_test[i]), f"test image #{i}", CLASSES[int(ds.y_test[i])]


def _layers(entry) -> None:
    st.subheader("One input, layer by layer")
    pick, show = st.columns([1, 3], gap="large")
    with pick:
        x, what, truth = _input()
        st.image(shared.upscale(x * 255, 6), caption=what + (f" (true class: {truth})" if truth else ""))
        st.radio("Pictures from", list(PICTURE_FROM), key="in_from", format_func=PICTURE_FROM.get,
                 horizontal=True, help="Both implementations' outputs; they look the same because they are.")
    layers = view.layer_outputs(entry["model"], entry["net"], x)
    side = st.session_state.in_from
    with show:
        worst = max(d["max_abs_diff"] for d in layers)
        ok = all(d["agree"] for d in layers)
        (st.success if ok else st.error)(
            f"PyTorch and the NumPy twin: largest difference in any layer output **{worst:.1e}** "
            + ("— the same numbers, up to float32 rounding." if ok else
               f"— above the tolerance of {view.AGREE_TOLERANCE:g}: a bug in the twin."))
        st.dataframe(view.layer_diff_table(layers), hide_index=True, width="stretch", height="content",
                     column_config={"max |PyTorch − NumPy|": st.column_config.NumberColumn(format="%.1e"),
                                    "values": st.column_config.NumberColumn(format="localized")})
        st.caption("Different code (im2col convolution, the input normalisation folded into the first "
                   "layer, another BLAS) adds and multiplies in a different order: float32 results then "
                   f"differ in the last digits, around 1e-6. Above {view.AGREE_TOLERANCE:g} would be a bug.")
    st.caption(f"Below, every layer's output ({PICTURE_FROM[side]}'s): feature maps as images, one per "
               "channel, on one scale per layer — gray from 0 (black) to the layer's largest value "
               "(white), or blue–white–red where values can be negative; dense layers as a strip, one "
               "stripe per unit (hover for the values); dropout is left out (it does nothing at inference).")
    for i, d in enumerate(layers):
        _layer_row(i, d, d[side])


def _layer_row(i: int, d: dict, out: np.ndarray) -> None:
    if d["kind"] == "dropout":
        return  # the identity at inference: the same picture as the layer before
    label, pic = st.columns([1, 5], vertical_alignment="center")
    label.markdown(f"**{d['name']}**  \n{d['kind']} · {' × '.join(str(s) for s in d['shape'])}")
    label.caption(f"max |Δ| {d['max_abs_diff']:.1e}")
    if out.ndim == 3:
        shown = out[:MAX_MAPS]  # a 128-channel layer would fill screens: its first channels tell the story
        target = 168 if len(out) == 1 else 84 if len(shown) <= 8 else 56
        pic.image(view.map_grid(shown, cols=min(len(shown), 16), target=target),
                  caption=f"the first {len(shown)} of {len(out)} channels" if len(shown) < len(out) else None)
    elif d["name"] == "out":
        probs = shared.softmax(out)
        fig = go.Figure(go.Bar(x=list(CLASSES), y=out, marker_color=common.COLORS[0],
                               customdata=probs, hovertemplate="%{x}: logit %{y:.3f}, p = %{customdata:.1%}"
                                                               "<extra></extra>"))
        fig.update_yaxes(title="logit")
        pic.plotly_chart(common.style(fig, height=300, top=20), theme=None, key=f"in_out_{i}")
    else:
        r = view.strip_range(out)
        fig = go.Figure(go.Heatmap(z=view.strip(out), zmin=r["zmin"], zmax=r["zmax"],
                                   colorscale="RdBu_r" if r["signed"] else "gray", showscale=False,
                                   hovertemplate="unit %{x}: %{z:.3f}<extra></extra>"))
        fig.update_yaxes(visible=False)
        fig.update_xaxes(title=f"{len(out):,} values")
        pic.plotly_chart(common.style(fig, height=130, top=10), theme=None, key=f"in_strip_{i}")


# --- the whole test set ---------------------------------------------------------------------

def _whole_test_set(entry) -> None:
    st.subheader("All 10,000 test images")
    path, params = str(entry["checkpoint"]), {"impl": "numpy"}
    asked = st.session_state.in_compare.get(entry["key"]) or jobs.under_way("compare", path, params)
    if not asked and not st.button("Compare PyTorch and the NumPy twin on the whole test set",
                                   icon=":material/compare_arrows:", key="in_compare_btn"):
        st.caption("Every test image through both implementations: seconds for an MLP, up to a minute "
                   "for a CNN on a busy 2-core machine; computed once, off the web server, for everyone.")
        return
    st.session_state.in_compare = {**st.session_state.in_compare, entry["key"]: True}
    if not jobs.ready("compare", path, params, "PyTorch vs the NumPy twin on 10,000 images", key="in_cmp_job"):
        return
    result = analysis.cached("compare", path, params)
    s = view.compare_summary(result)
    c = st.columns(4)
    c[0].metric("Same predicted class", f"{s['agreement']:.2%}", f"{s['disagreements']} of {s['images']:,} differ",
                delta_color="off")
    c[1].metric("Accuracy, PyTorch", f"{s['accuracy_torch']:.2%}")
    c[2].metric("Accuracy, NumPy twin", f"{s['accuracy_manual']:.2%}")
    c[3].metric("Largest output difference", f"{s['max_abs_diff']:.1e}")
    st.dataframe(s["layers"], hide_index=True, width="stretch", placeholder="—", column_config={
        "max |PyTorch − NumPy| over all images": st.column_config.NumberColumn(format="%.1e")})


if __name__ == "__main__":  # run as a script by Streamlit's pages/ discovery: see ui/__init__.py
    common.run_app()
