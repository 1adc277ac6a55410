"""Predict page: draw, upload, photograph or pick a garment, watch it become the 28×28 input
the model sees, and read the prediction — from PyTorch and from the hand-written NumPy twin,
side by side.

The preprocessing is fmnist_core.preprocess (every step is shown); an unusable file gets its
one-sentence ImageError in an st.error box and the page carries on. Models come from
ui/model_picker (cached per checkpoint version, shared, read-only), so a prediction is a
few milliseconds even while a training process is busy. The last input is kept in session
state (`pr_last`) for the "Inside the network" page.
"""
from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from fmnist_core.views import predict as view, shared
from fmnist_core.data import CLASSES
from fmnist_core.errors import ImageError
from fmnist_core.preprocess import FORMATS, preprocess
from ui import common, model_picker, predict_fool, predict_why

SOURCES = {"draw": ":material/draw: Draw", "upload": ":material/upload_file: Upload",
           "camera": ":material/photo_camera: Camera", "test": ":material/image: Test image"}
ANY_CLASS = "any class"
CANVAS_SIDE = 308  # 11 px per model pixel: room to draw, fits beside the results on a laptop
IMPL_COLOURS = {"PyTorch": common.COLORS[0], "NumPy twin": common.COLORS[1]}


def _init_state() -> None:
    common.init_state({"pr_source": "draw", "pr_stroke": 24, "pr_paper": False, "pr_canvas_n": 0,
                       "pr_cam_on": False, "pr_test_class": ANY_CLASS, "pr_test_idx": 0, "pr_last": None})


def page() -> None:
    _init_state()
    st.title("Predict")
    st.caption("Give the model a garment: draw one, upload a photo or scan, take a picture, or pick "
               "one of the 10,000 test images. You see every preprocessing step, the 28×28 image the "
               "model really gets, and what PyTorch and the hand-written NumPy twin make of it.")
    entry = model_picker.pick("pr_model")

    left, right = st.columns([2, 3], gap="large")
    with left:
        st.radio("Input", list(SOURCES), key="pr_source", horizontal=True, format_func=SOURCES.get,
                 label_visibility="collapsed")
        source = st.session_state.pr_source
        got = {"draw": _draw, "upload": _upload, "camera": _camera, "test": _test_image}[source]()
        # under the canvas: what in this drawing makes the model misread it, filled in below
        advice = st.container() if source == "draw" else None
    with right:
        if isinstance(got, str):
            st.info(got)  # what to do first, where the result will appear
        elif got is not None:
            _show(entry, *got, advice=advice)


# --- the four inputs: each returns (image for preprocess or None, prepared 28x28 or None,
#     description, true class or None), or a hint (str) when there is nothing to predict yet --

def _clear_canvas() -> None:
    st.session_state.pr_canvas_n += 1  # a new key: a fresh, empty canvas


def _draw():
    from streamlit_drawable_canvas import st_canvas  # a components-v2 widget: needs the runtime

    a, b = st.columns(2, vertical_alignment="center")
    a.slider("Stroke width", 4, 48, step=2, key="pr_stroke")
    b.toggle("Black on white", key="pr_paper", on_change=_clear_canvas,
             help="Fashion-MNIST garments are light on black; preprocessing turns a light "
                  "background around, so both work.")
    paper = st.session_state.pr_paper
    canvas = st_canvas(stroke_width=st.session_state.pr_stroke,
                       stroke_color="#000000" if paper else "#FFFFFF",
                       background_color="#FFFFFF" if paper else "#000000",
                       width=CANVAS_SIDE, height=CANVAS_SIDE, drawing_mode="freedraw",
                       return_image_data=True, key=f"pr_canvas_{st.session_state.pr_canvas_n}")
    st.button("Clear the drawing", icon=":material/ink_eraser:", key="pr_clear", on_click=_clear_canvas)
    drawn = bool((canvas.json_data or {}).get("objects"))
    image = canvas.image_data if drawn else None
    if image is None:
        return ("Draw a garment in the black square — a T-shirt, trousers, a bag, a shoe — as a solid "
                "shape (scribble it full, not just its outline), the way the dataset's photos show "
                "garments. The prediction appears here.")
    return image, None, "your drawing", None


def _upload():
    limit = st.get_option("server.maxUploadSize")
    f = st.file_uploader("An image of a garment", key="pr_upload",
                         help=f"{', '.join(FORMATS)}; up to {limit} MB. Works best with one item on a "
                              "plain background, filling most of the picture.")
    if f is None:
        return "Upload a photo or scan of one garment on a plain background; the prediction appears here."
    return f.getvalue(), None, f"upload “{f.name}”", None


def _camera():
    try:
        blocked = view.camera_blocked(str(st.context.url))
    except Exception:  # no browser (AppTest)
        blocked = None
    if blocked:
        st.warning(blocked, icon=":material/no_photography:")
    st.toggle("Use the camera", key="pr_cam_on",
              help="Off until you ask: the browser asks for permission only then.")
    if not st.session_state.pr_cam_on:
        return "Turn the camera on, then hold one garment against a plain wall or sheet, filling the frame."
    photo = st.camera_input("Take a photo", key="pr_camera")
    if photo is None:
        return "Take a photo: the prediction appears here."
    return photo.getvalue(), None, "camera photo", None


def _random_test_image() -> None:
    k = st.session_state.pr_test_class
    st.session_state.pr_test_idx = shared.random_test_index(
        common.dataset().y_test, None if k == ANY_CLASS else CLASSES.index(k))


def _test_image():
    ds = common.dataset()
    a, b = st.columns([3, 2], vertical_alignment="bottom")
    a.selectbox("Class for “Random”", [ANY_CLASS, *CLASSES], key="pr_test_class")
    b.button("Random", icon=":material/shuffle:", key="pr_test_random", on_click=_random_test_image,
             width="stretch")
    st.number_input(f"Test image number (0–{len(ds.y_test) - 1:,})", min_value=0,
                    max_value=len(ds.y_test) - 1, step=1, key="pr_test_idx")
    i = int(st.session_state.pr_test_idx)
    x, y = ds.x_test[i], int(ds.y_test[i])
    st.image(shared.upscale(x, 8), caption=f"test image #{i}: {CLASSES[y]}")
    return None, x, f"test image #{i}", CLASSES[y]


# --- preprocessing and the prediction -------------------------------------------------------

def _show(entry, image, prepared, what: str, truth: str | None, advice=None) -> None:
    if prepared is not None:
        x = shared.as_input(prepared)  # a test image is already a model input: used as is
        steps = None
    else:
        try:
            x, steps = preprocess(image, return_steps=True)
        except ImageError as exc:
            st.error(f"Cannot use {what}: {exc}", icon=":material/broken_image:")
            return
    st.session_state.pr_last = {"x": x, "what": what, "truth": truth}
    if entry is None:
        if steps:
            _steps(steps)
        st.info("Choose a model above to see a prediction.")
        return
    # the answer first, in view without scrolling; then how the image became the model's input
    result = view.predict_both(entry["model"], entry["net"], x)
    _prediction(result, truth)
    if steps:
        _steps(steps)
    _agreement(result)
    predict_why.section(entry, x, result, image if prepared is None else None)
    predict_fool.section(entry, x, what)
    if advice is not None and steps:
        with advice:
            _drawing_advice(entry, x, steps, result)


def _drawing_advice(entry, x, steps, result: dict) -> None:
    """Under the canvas: each way this drawing differs from the dataset's look that measurably
    changes the reading (views.predict.drawing_advice), and an outline read filled in."""
    named = dict(steps)
    # the pen width in the pixels the trim measured in: the canvas image comes at the screen's
    # pixel ratio, and preprocessing may have shrunk it
    pen = st.session_state.pr_stroke * named["grayscale"].size[0] / CANVAS_SIDE
    tips = view.drawing_advice(x, named["trimmed to the item"].size, pen, result["label"], result["probability"])
    if not tips:
        return
    st.markdown("**Why the model may misread this drawing**")
    for kind, text in tips:
        st.caption(text)
        if kind == "outline":
            filled = view.filled_in(x)
            other = view.predict_both(entry["model"], entry["net"], filled)
            a, b = st.columns([1, 3], vertical_alignment="center")
            a.image(shared.upscale(filled * 255, 3), caption="filled in")
            b.caption(f"The same drawing filled in: the model reads **{other['label']}** "
                      f"({other['probability']:.0%}) instead of **{result['label']}** "
                      f"({result['probability']:.0%}).")


def _steps(steps) -> None:
    st.markdown("**From your image to the model's input**")
    per_row = 4
    for start in range(0, len(steps), per_row):
        for col, (name, img) in zip(st.columns(per_row), steps[start:start + per_row]):
            # fixed-size square tiles: a tall thin drawing no longer stretches a column to 900 px
            col.image(view.tile(img), caption=name, width=view.TILE_SIDE)
    st.caption("The last picture is exactly what the network gets: 28×28 gray levels, garment light "
               "on black, filling the frame on its long side — like the dataset's own images. Each step "
               "is shown whole inside its square, on a dark frame.")


def _prediction(r: dict, truth: str | None) -> None:
    # two wide cards: a class name such as "T-shirt/top" does not fit a third of this column
    a, b = st.columns(2)
    a.metric("PyTorch says", r["label"], f"{r['probability']:.1%} sure", delta_color="off", delta_arrow="off")
    b.metric("NumPy twin says", r["manual_label"], f"{r['manual'][r['index']]:.1%} sure", delta_color="off",
             delta_arrow="off")
    if truth is not None:
        (st.success if truth == r["label"] else st.warning)(
            f"The true class is **{truth}**: the model is {'right' if truth == r['label'] else 'wrong'}.")
    st.markdown("**Probability of each class**")
    df = view.probability_table(r)
    fig = go.Figure()
    for impl in ("PyTorch", "NumPy twin"):
        fig.add_trace(go.Bar(y=df["class"], x=df[impl], name=impl, orientation="h",
                             marker_color=IMPL_COLOURS[impl], text=[f"{p:.1%}" for p in df[impl]],
                             textposition="outside", cliponaxis=False,
                             hovertemplate="%{y}: %{x:.4%}<extra>" + impl + "</extra>"))
    fig.update_layout(barmode="group")
    fig.update_xaxes(range=[0, 1.12], tickformat=".0%", title="probability")
    fig.update_yaxes(autorange="reversed", title="")
    st.plotly_chart(common.style(fig, height=420, top=30), theme=None, key="pr_probs")


def _agreement(r: dict) -> None:
    c, d = st.columns([1, 2], vertical_alignment="center")
    c.metric("Largest difference", f"{r['max_prob_diff']:.1e}", "in any probability", delta_color="off",
             delta_arrow="off")
    if r["agree"]:
        d.caption("PyTorch and the NumPy twin compute the same numbers (to float32 rounding) from the same "
                  "weights, so they always pick the same class.")
    else:
        d.error("PyTorch and the NumPy twin disagree — that would be a bug in the twin.")
    df = view.probability_table(r)
    with st.expander("The numbers"):
        st.dataframe(df, hide_index=True, width="stretch",
                     column_config={k: st.column_config.NumberColumn(format="%.6f")
                                    for k in ("PyTorch", "NumPy twin")}
                     | {"|difference|": st.column_config.NumberColumn(format="%.1e")})


if __name__ == "__main__":  # run as a script by Streamlit's pages/ discovery: see ui/__init__.py
    common.run_app()
