"""Predict page, "Fool the model": the current input attacked with FGSM or PGD (captum.robust,
fmnist_core.adversarial) within an epsilon a student sets, the perturbed 28×28 image, the
perturbation itself in diverging colours, the new prediction, and a search for the smallest
epsilon that changes the answer.

Epsilon is set in gray levels (k/255), the resolution of the search too, so "Try it" puts
the search's answer exactly on the slider. Session state: pf_attack, pf_level, and pf_found
(the last search, kept only for the same model, input and attack).
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from fmnist_core import adversarial
from fmnist_core.errors import WorkbenchError
from fmnist_core.views import predict as predict_view, shared
from ui import common

MAX_LEVEL = 64  # the slider's top: 64/255 = 0.25, far past what flips almost any image
HELP = {"FGSM": "Fast Gradient Sign Method: one step of size ε along the sign of the loss's gradient.",
        "PGD": f"Projected Gradient Descent: {adversarial.PGD_STEPS} smaller steps, each kept within ε "
               "of the original; stronger than FGSM at the same ε, and slower."}


def _use_found(level: int) -> None:
    st.session_state.pf_level = level


def section(entry: dict, x: np.ndarray, what: str) -> None:
    """Drawn under the prediction: entry is model_picker's choice, x the prepared input."""
    common.init_state({"pf_attack": "FGSM", "pf_found": None})
    # a new input (another upload, test image or model) starts where FGSM changes its answer;
    # more strokes on the same drawing keep the student's ε
    started = (entry["key"], what)
    if st.session_state.get("pf_started") != started or "pf_level" not in st.session_state:
        try:
            st.session_state.pf_level = predict_view.fool_start_level(entry["model"], x, MAX_LEVEL)
        except WorkbenchError:
            st.session_state.pf_level = predict_view.FOOL_LEVEL
        st.session_state.pf_started = started
    st.markdown("**Fool the model**")
    st.caption("Change every pixel by at most ε, in the direction that most raises the model's loss for "
               "its own answer. Invisible noise is often enough to change what a network sees.")
    a, b = st.columns([1, 2], vertical_alignment="bottom")
    a.radio("Attack", adversarial.ATTACKS, key="pf_attack", horizontal=True,
            help="  \n".join(f"**{k}**: {v}" for k, v in HELP.items()))
    b.slider("ε: how far each pixel may move, in gray levels (of 255)", 0, MAX_LEVEL, key="pf_level")
    name, level = st.session_state.pf_attack, int(st.session_state.pf_level)
    eps = level / 255
    if not common.allow_cheap_work("The attack"):
        return
    try:
        r = adversarial.attack_one(entry["model"], x, name, eps)
    except WorkbenchError as exc:
        st.error(f"Cannot attack {what}: {exc}")
        return
    _pictures(x, r, level)
    before, after = r["before"], r["after"]
    c, d = st.columns(2)
    c.metric("After the attack", after["label"], f"{after['probability']:.1%} sure", delta_color="off",
             delta_arrow="off")
    d.metric(f"ε = {level}/255", f"{eps:.3f}", "largest change of a pixel", delta_color="off", delta_arrow="off")
    if r["flipped"]:
        st.warning(f"{name} with ε = {eps:.3f} turns **{before['label']}** into **{after['label']}**.",
                   icon=":material/warning:")
    else:
        st.info(f"At ε = {eps:.3f}, {name} does not change the answer: still **{after['label']}** "
                f"({after['probability']:.1%}, was {before['probability']:.1%}). Raise ε, try PGD, or search.")
    _search(entry, x, what, name)


def _pictures(x: np.ndarray, r: dict, level: int) -> None:
    left, mid, right = st.columns(3)
    left.image(shared.upscale(x * 255, 6), caption=f"input: {r['before']['label']}", width="stretch")
    mid.image(shared.upscale(r["adversarial"] * 255, 6), caption=f"perturbed: {r['after']['label']}",
              width="stretch")
    lim = max(level / 255, 1 / 255)
    fig = go.Figure(go.Heatmap(z=r["perturbation"], zmin=-lim, zmax=lim, zmid=0, colorscale="RdBu_r",
                               showscale=False, hovertemplate="row %{y}, column %{x}: %{z:+.3f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", visible=False, scaleanchor="x", constrain="domain")
    fig.update_xaxes(visible=False, constrain="domain")
    right.plotly_chart(common.style(fig, height=200, top=4), theme=None, key="pf_noise",
                       config={"displayModeBar": False})
    right.caption("the perturbation: red brighter, blue darker")


def _search(entry: dict, x: np.ndarray, what: str, name: str) -> None:
    key = (entry["key"], what, name, hash(np.asarray(x).tobytes()))
    if st.button(f"Find the smallest ε that changes the answer ({name})", icon=":material/search:",
                 key="pf_search") and common.allow_cheap_work("The search"):
        try:
            with st.spinner(f"Trying {name} at ε up to {MAX_LEVEL}/255…"):
                found = adversarial.smallest_flip(entry["model"], x, name, search_max=MAX_LEVEL / 255)
        except WorkbenchError as exc:
            st.error(f"Cannot search for {what}: {exc}")
            return
        st.session_state.pf_found = {"key": key, **found}
    found = st.session_state.pf_found
    if not found or found["key"] != key:
        return
    grid = f"ε = 1/255, 2/255, … {round(found['search_max'] * 255)}/255"
    if found["epsilon"] is None:
        st.info(f"No ε up to {found['search_max']:.3f} ({MAX_LEVEL}/255) makes {name} change the answer "
                f"(searched {grid}: {found['method']}).")
        return
    level = round(found["epsilon"] * 255)
    r = found["result"]
    a, b = st.columns([3, 1], vertical_alignment="center")
    a.markdown(f"The smallest ε that makes **{name}** change the answer is **{found['epsilon']:.3f}** "
               f"({level}/255): **{r['before']['label']}** becomes **{r['after']['label']}** "
               f"({r['after']['probability']:.1%}); one gray level less does not.")
    b.button("Try it", key="pf_try", on_click=_use_found, args=(level,), icon=":material/tune:")
    st.caption(f"Searched {grid} (one gray level apart): {found['method']}; {found['tried']} attacks run.")
