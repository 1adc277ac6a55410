"""The Predict page's "Why this class?" section: which pixels made the model say what it said.

A method picker (the captum methods of fmnist_core.explain that fit the model: Grad-CAM only
for CNNs) and a class picker that starts on the predicted class ("why not Shirt?"); the
attribution over the 28x28 input and, for a drawing, upload or photo, over the original
picture through the preprocessing's crop and scale. For an MLP the NumPy twin's own
backward pass computes the same gradient as captum's saliency: both are shown with their
largest difference. The work is fmnist_core.views.explain's, cached per model and input.
"""
from __future__ import annotations

import hashlib

import numpy as np
import streamlit as st

from fmnist_core import analysis, explain
from fmnist_core.data import CLASSES
from fmnist_core.errors import WorkbenchError
from fmnist_core.preprocess import preprocess_mapped
from fmnist_core.views import explain as view
from ui import common, jobs


@st.cache_data(show_spinner=False, max_entries=64)
def _why(model_key: str, model_id: int, x_digest: str, method: str, target: int, _model, _x):
    return view.why(_model, _x, method, target)


def _digest(x: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(x, np.float32).tobytes()).hexdigest()


def section(entry, x: np.ndarray, result: dict, image=None) -> None:
    """Under the prediction. entry: the model picker's; x: the 28x28 input; result: its
    prediction; image: what was preprocessed (None for a test image, itself a model input)."""
    st.markdown("**Why this class?**")
    model, digest = entry["model"], _digest(x)
    # a new input or model: the class picker starts again on the predicted class
    if st.session_state.get("pr_why_for") != (entry["key"], digest):
        st.session_state.pr_why_for = (entry["key"], digest)
        st.session_state.pr_why_class = result["label"]
    methods = explain.methods_for(model)
    if st.session_state.get("pr_why_method") not in methods:
        st.session_state.pr_why_method = "ig"  # reads best: on the garment, signed, little noise
    a, b = st.columns(2)
    a.selectbox("Method", methods, key="pr_why_method", format_func=lambda m: explain.METHODS[m]["title"],
                help="Grad-CAM needs conv layers: it is offered for CNNs only.")
    b.selectbox("Class", list(CLASSES), key="pr_why_class",
                help="Starts on the predicted class; pick another to ask “why not this one?”")
    method, target = st.session_state.pr_why_method, CLASSES.index(st.session_state.pr_why_class)
    if not common.allow_cheap_work("The explanation"):
        return
    try:
        with st.spinner("Attributing…"):
            why = _why(entry["key"], id(model), digest, method, target, model, x)
    except WorkbenchError as exc:
        st.error(f"Cannot explain this: {exc}")
        return
    st.caption(f"{explain.METHODS[method]['title']}: {explain.METHODS[method]['about']}. "
               f"**Red**: evidence for **{why['target']}** ({why['target_probability']:.1%}), **blue**: "
               "against; the stronger the colour, the more it counts.")
    left, right = st.columns(2)
    left.image(why["overlay"], caption=f"{why['target']}: attribution on the model input", width="stretch")
    original = _on_original(image, why["attribution"]) if image is not None else None
    if original is not None:
        right.image(original, caption="the same, on your picture (through the crop and scale)", width="stretch")
    else:
        right.caption("A test image is the model input itself: there is no other picture to map it onto.")
    if why["twin"] is not None:
        _twin(why, x)
    _faithfulness_panel(entry)


def _faithfulness_panel(entry) -> None:
    """Do the methods find more than the garment's bright pixels? The deletion check, with the
    model-free baselines, for this model (a shared analysis job on request: tens of seconds,
    off the web server, then cached for everyone)."""
    with st.expander("Which methods beat “just the bright pixels”?", icon=":material/fact_check:"):
        st.caption(f"Delete (set to black) 10% of the pixels of each of the first "
                   f"{view.FAITHFULNESS_IMAGES} test images and watch the predicted class's probability: "
                   "a method that found what the model uses makes it fall further with *its* top 10% "
                   "than with 10% chosen without any model — random pixels of the garment, or simply "
                   f"the brightest pixels. “Beats” means by at least {explain.BEAT_MARGIN:.2f}.")
        key = f"pr_faith_{entry['key']}"
        path, params = str(entry["checkpoint"]), {"images": view.FAITHFULNESS_IMAGES}
        if st.button("Run the check on this model", key="pr_faith_btn") or jobs.under_way("deletion", path, params):
            st.session_state[key] = True
        if st.session_state.get(key):
            if not jobs.ready("deletion", path, params, "The deletion check", key="pr_faith_job"):
                return
            rows = analysis.cached("deletion", path, params)["rows"]
            st.dataframe(rows, hide_index=True, width="stretch", column_config={
                c: st.column_config.NumberColumn(format="%.3f")
                for c in ("before", "its top 10% deleted", "random garment 10%", "brightest 10%")})


def _on_original(image, attribution):
    try:
        _, steps, frame = preprocess_mapped(image)
    except WorkbenchError:
        return None  # it was preprocessed a moment ago; nothing to add if it cannot be now
    return view.on_original(dict(steps)["original"], frame, attribution)


def _twin(why: dict, x: np.ndarray) -> None:
    t = why["twin"]
    st.markdown("**The mechanism: the gradient by hand**")
    a, b, c = st.columns([2, 2, 3], vertical_alignment="center")
    a.image(view.on_input(x, t["captum"], 5), caption="captum saliency", width="stretch")
    b.image(view.on_input(x, t["twin"], 5), caption="NumPy twin's backward", width="stretch")
    c.metric("Twin vs captum: largest difference", f"{t['max_diff']:.1e}", f"gradients up to {t['scale']:.2g}",
             delta_color="off", delta_arrow="off")
    c.caption("Saliency is the gradient of the class score with respect to each pixel. The twin "
              "gets it with its own backward pass: one-hot at the scores, then each layer's "
              "backward down to the pixels — the same numbers, to float32 rounding.")

