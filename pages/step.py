"""Step through: watch one batch teach the network, one training step at a time, with the NumPy
twin's own numbers — forward, loss, backward, update, effect — PyTorch's autograd beside it,
curves over many steps, and one convolution pixel taken apart.

The numbers come from fmnist_core.twin.step (the Stepper) and fmnist_core.views.step (what each
stage shows). The stepping state is this session's alone (st.session_state: the Stepper, the
last step's record, the previous curve), bounded by twin.step's size limits; nothing is stored.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from fmnist_core.data import CLASSES
from fmnist_core.errors import WorkbenchError
from fmnist_core.twin.step import MAX_BATCH, OPTIMIZERS
from fmnist_core.views import step as view
from fmnist_core.views.format import plural
from ui import common

CHOICE_KEYS = ("model", "hidden", "activation", "batchnorm", "channels", "kernel", "pool", "fc", "optimizer",
               "lr", "momentum", "batch", "seed", "source", "same_batch", "label")
ACTIVATIONS = ("relu", "sigmoid", "tanh", "leaky_relu", "gelu")
RUNS = {"sp_run10": 10, "sp_run100": 100}


def _init_state() -> None:
    common.init_state({"sp_model": "mlp-seed000", "sp_hidden": "128", "sp_activation": "relu",
                       "sp_batchnorm": False, "sp_channels": "8, 16", "sp_kernel": 3, "sp_pool": "max",
                       "sp_fc": "32", "sp_optimizer": "sgd", "sp_lr": 0.1, "sp_momentum": 0.9, "sp_batch": 64,
                       "sp_seed": 0, "sp_source": "train", "sp_same_batch": True, "sp_label": 0,
                       "sp_stepper": None, "sp_rec": None, "sp_error": None, "sp_note": None, "sp_prev": None,
                       "sp_image": 0, "sp_ch": 0, "sp_row": 0, "sp_col": 0})


def _choice() -> dict:
    return {k: st.session_state[f"sp_{k}"] for k in CHOICE_KEYS}


# --- callbacks: they change the session's stepper before the page is drawn -----------------------

def _keep_previous() -> None:
    """The current loss curve, kept to compare with the next (momentum vs none, lr 1.0 vs 0.1)."""
    s = st.session_state.sp_stepper
    if s is not None and s.history:
        st.session_state.sp_prev = {"label": f"before: {OPTIMIZERS[s.kind]}, lr {s.lr:g}",
                                    "step": [h["step"] for h in s.history], "loss": [h["loss"] for h in s.history]}


def _set_up() -> None:
    _keep_previous()
    last = st.session_state.get("pr_last")
    drawing = {"x": last["x"], "label": st.session_state.sp_label} if last is not None else None
    try:
        ds = common.dataset()
        stepper = view.make_stepper(_choice(), ds.x_train, ds.y_train, drawing)
    except WorkbenchError as exc:
        st.session_state.sp_error = str(exc)
        return
    st.session_state.update(sp_stepper=stepper, sp_rec=None, sp_error=None, sp_note=None, sp_image=0)


def _template(name: str) -> None:
    for k, v in view.template_choice(name).items():
        st.session_state[f"sp_{k}"] = v
    _set_up()
    st.session_state.sp_note = view.TEMPLATES[name]["claim"]


def _optimizer_changed() -> None:
    s = st.session_state.sp_stepper
    if s is None:
        return
    try:
        s.set_optimizer(st.session_state.sp_optimizer, float(st.session_state.sp_lr),
                        float(st.session_state.sp_momentum))
        st.session_state.sp_error = None
    except WorkbenchError as exc:
        st.session_state.sp_error = str(exc)


def _step(n: int) -> None:
    s = st.session_state.sp_stepper
    if s is None:
        return
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # lr 1.0 may overflow: shown, not warned
        st.session_state.sp_rec = s.run(n)
    st.session_state.sp_image = min(st.session_state.sp_image, len(st.session_state.sp_rec.images) - 1)


def _reset() -> None:
    s = st.session_state.sp_stepper
    if s is not None:
        _keep_previous()
        s.reset()
        st.session_state.sp_rec = None


def _pick_pixel() -> None:
    event = st.session_state.get("sp_map")
    points = (event or {}).get("selection", {}).get("points") or []
    if points:
        st.session_state.sp_row, st.session_state.sp_col = int(points[0]["y"]), int(points[0]["x"])


# --- the page ---------------------------------------------------------------------------------------

def page() -> None:
    _init_state()
    st.title("Step through training")
    st.caption("Watch one batch teach the network: every stage of one training step with the NumPy twin's "
               "own numbers — the forward pass, the softmax against the label, the backward pass layer by "
               "layer, the update — while PyTorch's autograd runs the same step beside it.")
    _setup()
    if st.session_state.sp_error:
        st.error(st.session_state.sp_error)
    if st.session_state.sp_note:
        st.info(st.session_state.sp_note)
    stepper = st.session_state.sp_stepper
    if stepper is None:
        st.caption("Choose a model and press **Set up**, or start from a template.")
        return
    _controls(stepper)
    rec = st.session_state.sp_rec
    if rec is None:
        st.caption(f"Set up: {view.size_note(stepper.config, stepper.batch_size)}, initialised with seed "
                   f"{stepper.seed}. Press **Step**.")
        return
    _summary(rec)
    tabs = st.tabs(["1 · Forward", "2 · Loss", "3 · Backward", "4 · Update", "5 · Effect", "Curves"]
                   + (["A convolution, pixel by pixel"] if any(d["kind"] == "conv" for d in rec.layers) else []))
    with tabs[0]:
        _forward(rec)
    with tabs[1]:
        _loss(rec)
    with tabs[2]:
        _backward(rec)
    with tabs[3]:
        _update(rec)
    with tabs[4]:
        _effect(rec)
    with tabs[5]:
        _curves(stepper)
    if len(tabs) > 6:
        with tabs[6]:
            _conv(rec)


def _setup() -> None:
    st.markdown("**Templates**")
    cols = st.columns(len(view.TEMPLATES))
    for col, (name, t) in zip(cols, view.TEMPLATES.items()):
        col.button(t["title"], key=f"sp_t_{name}", on_click=_template, args=(name,), width="stretch",
                   help=t["claim"])
    with st.expander("Set-up: model, optimizer, batch, seed", expanded=st.session_state.sp_stepper is None):
        a, b, c = st.columns(3, gap="large")
        with a:
            st.selectbox("Model", list(view.MODELS), key="sp_model", format_func=lambda k: view.MODELS[k][0])
            if st.session_state.sp_model == "own-mlp":
                st.text_input("Hidden layers", key="sp_hidden", help="widths separated by commas, e.g. 128, 64")
            if st.session_state.sp_model == "own-cnn":
                st.text_input("Conv channels", key="sp_channels")
                st.selectbox("Kernel", (3, 5), key="sp_kernel")
                st.selectbox("Pooling", ("max", "avg"), key="sp_pool")
                st.text_input("Fully connected layers", key="sp_fc")
            if st.session_state.sp_model in ("own-mlp", "own-cnn"):
                st.selectbox("Activation", ACTIVATIONS, key="sp_activation")
                st.checkbox("Batchnorm", key="sp_batchnorm")
        with b:
            st.selectbox("Optimizer", list(OPTIMIZERS), key="sp_optimizer", format_func=OPTIMIZERS.get,
                         on_change=_optimizer_changed, help="Change it between steps too: a new optimizer starts "
                                                            "with an empty state.")
            st.number_input("Learning rate", min_value=1e-5, max_value=10.0, step=0.01, format="%.4g", key="sp_lr",
                            on_change=_optimizer_changed)
            if st.session_state.sp_optimizer == "momentum":
                st.number_input("Momentum", min_value=0.0, max_value=0.99, step=0.05, key="sp_momentum",
                                on_change=_optimizer_changed)
            st.number_input("Seed of the initialisation", min_value=0, max_value=10_000, step=1, key="sp_seed")
        with c:
            last = st.session_state.get("pr_last")
            st.radio("Batch", ("train", "drawing"), key="sp_source", horizontal=True,
                     format_func=lambda s: "training images" if s == "train" else "the last Predict input")
            if st.session_state.sp_source == "train":
                st.number_input(f"Images per batch (1–{MAX_BATCH})", min_value=1, max_value=MAX_BATCH, step=1,
                                key="sp_batch")
                st.checkbox("The same batch every step", key="sp_same_batch",
                            help="On: watch one batch being learned. Off: each step takes the next batch of a "
                                 "shuffled pass over the 60,000 training images, as training does.")
            else:
                st.caption(f"the last Predict input: {last['what']}" if last else
                           "No Predict input yet: draw one on the Predict page first.")
                st.selectbox("Its label", range(len(CLASSES)), key="sp_label", format_func=lambda k: CLASSES[k])
        st.button("Set up", key="sp_setup", on_click=_set_up, type="primary", icon=":material/restart_alt:")
        st.caption("Model, batch and seed take effect at **Set up**; the optimizer and the learning rate at "
                   "once, between two steps.")


def _controls(stepper) -> None:
    cols = st.columns(6)
    cols[0].button("Step", key="sp_step", on_click=_step, args=(1,), type="primary", width="stretch",
                   icon=":material/footprint:")
    for col, (key, n) in zip(cols[1:3], RUNS.items()):
        col.button(f"Run {n}", key=key, on_click=_step, args=(n,), width="stretch")
    epoch = stepper.steps_per_epoch()
    cols[3].button("Run one epoch", key="sp_epoch", on_click=_step, args=(epoch,), width="stretch",
                   disabled=stepper.same_batch,
                   help="The same batch every step has no epoch" if stepper.same_batch else
                   f"{epoch:,} steps: every training image once"
                   + (" (a CNN's epoch takes tens of seconds, the page waits)" if stepper.config.kind == "cnn" else ""))
    cols[4].button("Reset", key="sp_reset", on_click=_reset, width="stretch", icon=":material/replay:",
                   help="Back to the same initialisation and batch order: the same steps again, bit for bit")
    rec = st.session_state.sp_rec
    held = stepper.nbytes() + (rec.nbytes() if rec is not None else 0)
    cols[5].caption(f"{plural(stepper.t, 'step')} done · {OPTIMIZERS[stepper.kind]}, lr {stepper.lr:g} · "
                    f"{held / 2**20:.1f} MB held for this tab, nothing stored")


def _summary(rec) -> None:
    e = view.effect(rec)
    c = st.columns(4)
    c[0].metric("Step", f"{rec.step:,}")
    c[1].metric("Loss on the batch", f"{rec.loss:.4f}")
    c[2].metric("Loss after the update", f"{rec.loss_after:.4f}", f"{rec.loss_after - rec.loss:+.4f}",
                delta_color="inverse")
    c[3].metric("Batch accuracy", f"{e['accuracy']:.0%} → {e['accuracy_after']:.0%}")
    ok, text = view.check_sentence(rec.check)
    (st.success if ok else st.error)(text)
    left, right = st.columns([3, 1], vertical_alignment="center")
    left.image(e["images"], caption=f"the batch's first {len(rec.images)} of {len(rec.labels)} images: "
               + ", ".join(CLASSES[int(k)] for k in rec.labels[:len(rec.images)]))
    right.selectbox("Image looked at", range(len(rec.images)), key="sp_image",
                    format_func=lambda i: f"{i + 1}: {CLASSES[int(rec.labels[i])]}")


def _few(values, n: int = 10) -> str:
    """The first values of a vector, as the strip's caption."""
    shown = ", ".join(f"{v:.3g}" for v in values[:n])
    return shown + (", …" if len(values) > n else "")


def _forward(rec) -> None:
    i = st.session_state.sp_image
    first = view.first_layer(rec)
    st.image(first["weights"], caption=f"{first['layer']}'s weights before this step: the first {first['shown']} "
                                       f"of {first['total']} units (red raises the unit, blue lowers it)")
    for row in view.forward(rec, i):
        st.markdown(f"**{row['name']}** · {row['kind']} · {row['shape']} · mean over the shown images "
                    f"{row['mean']:.3f}, std {row['std']:.3f}")
        st.image(row["picture"], caption=f"{row['name']}: image {i + 1}'s output"
                 + (f" ({len(row['values'])} values: {_few(row['values'])})" if "values" in row else ""))


def _loss(rec) -> None:
    i = st.session_state.sp_image
    n = len(rec.labels)
    st.markdown(f"Softmax turns the logits into probabilities; the cross-entropy of image {i + 1} is "
                f"−log p(true class = {CLASSES[int(rec.labels[i])]}) = **{view.image_loss(rec, i):.4f}**, "
                f"and the batch's loss is the mean over its {n} images: **{rec.loss:.4f}**. Its gradient "
                f"with respect to the logits is (p − one-hot) / {n}: where the backward pass starts.")
    st.dataframe(view.loss_stage(rec, i), hide_index=True, width="stretch", height="content",
                 column_config={"probability": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0,
                                                                               format="%.3f"),
                                "dLoss/dlogit": st.column_config.NumberColumn(format="%.5f")})


def _backward(rec) -> None:
    i = st.session_state.sp_image
    st.caption("From the loss down, each layer's backward turns dLoss/d(its output) into dLoss/d(its input) and, "
               "for a layer with weights, dLoss/d(weights). Blue is negative, red positive.")
    for row in view.backward(rec, i):
        st.markdown(f"**{row['name']}** · {row['kind']} · dLoss/d(output) {row['shape']}, norm {row['norm']:.3e}")
        st.image(row["picture"], caption=f"dLoss/d({row['name']} output), image {i + 1}"
                 + (f" ({len(row['values'])} values: {_few(row['values'])})" if "values" in row else ""))
        if "weight_grad_picture" in row:
            st.image(row["weight_grad_picture"],
                     caption=f"gradient of {row['name']}.weight ({row['weight_grad_shape']}), norm "
                             f"{row['weight_grad_norm']:.3e}, summed over the batch")


def _update(rec) -> None:
    st.markdown(view.update_rule(rec))
    st.dataframe(view.update(rec), hide_index=True, width="stretch", height="content",
                 column_config={c: st.column_config.NumberColumn(format="%.3e")
                                for c in ("|gradient|", "|update|", "update / weight", "|m| (1st moment)",
                                          "|v| (2nd moment)")})
    st.caption("An update-to-weight ratio near 0.001 is the usual healthy size; far above, steps overshoot; "
               "far below, the layer hardly moves.")
    first = view.first_layer(rec)
    a, b = st.columns(2)
    a.image(first["weights"], caption=f"{first['layer']} before (its first {first['shown']} units)")
    b.image(first["after"], caption=f"{first['layer']} after: the same to the eye when update / weight is small")
    a.image(first["gradient"], caption=f"{first['layer']}: gradient")
    b.image(first["update"], caption=f"{first['layer']}: update (after − before)")
    moments = view.adam_moments(rec)
    if moments:
        a, b = st.columns(2)
        a.image(moments["m"], caption="Adam's first moment m (a running mean of the gradient)")
        b.image(moments["v"], caption="√v: Adam's running size of the gradient, which divides the step")


def _effect(rec) -> None:
    e = view.effect(rec)
    st.markdown(f"The same batch through the updated weights: loss **{e['loss']:.4f} → {e['loss_after']:.4f}**, "
                f"accuracy {e['accuracy']:.0%} → {e['accuracy_after']:.0%}.")
    st.dataframe(e["table"], hide_index=True, width="stretch", height="content",
                 column_config={"p(true) before": st.column_config.NumberColumn(format="%.3f"),
                                "p(true) after": st.column_config.NumberColumn(format="%.3f")})


def _curves(stepper) -> None:
    from plotly.subplots import make_subplots
    df = view.curves(stepper.history)
    metrics = ["loss"] + [m for m in view.CURVE_METRICS if (df["metric"] == m).any()]
    titles = ["loss on each step's batch"] + [view.CURVE_METRICS[m] for m in metrics[1:]]
    rows = -(-len(metrics) // 2)
    # one figure of small charts: each Plotly figure costs ~40 ms of server time to style
    fig = make_subplots(rows=rows, cols=2, subplot_titles=titles, vertical_spacing=0.12 / rows * 3,
                        horizontal_spacing=0.08)
    colour = {}
    for j, metric in enumerate(metrics):
        r, c = j // 2 + 1, j % 2 + 1
        for layer, g in df[df["metric"] == metric].groupby("layer", sort=False):
            colour.setdefault(layer, common.COLORS[len(colour) % len(common.COLORS)])
            fig.add_trace(go.Scatter(x=g["step"], y=g["value"], mode="lines", name=layer, legendgroup=layer,
                                     showlegend=layer not in {t.name for t in fig.data},
                                     line=dict(color=colour[layer], width=2)), row=r, col=c)
        if metric == "loss" and st.session_state.sp_prev:
            prev = st.session_state.sp_prev
            fig.add_trace(go.Scatter(x=prev["step"], y=prev["loss"], mode="lines", name=prev["label"],
                                     line=dict(color="gray", width=2, dash="dash")), row=r, col=c)
        if metric in ("grad_norm", "update_ratio"):
            fig.update_yaxes(type="log", row=r, col=c)
    fig.update_xaxes(title_text="step", row=rows)
    st.plotly_chart(common.style(fig, height=300 * rows, top=110), theme=None, key="sp_curves")
    if stepper.history:
        st.caption(f"Gradient norm, first layer over last: {view.gradient_ratio(stepper.history[-1]):.2g} "
                   "(far below 1: vanishing gradients; far above: exploding). The dashed gray loss is the "
                   "run before the last Reset or set-up, to compare.")


def _conv(rec) -> None:
    convs = [d["name"] for d in rec.layers if d["kind"] == "conv"]
    if st.session_state.get("sp_conv") not in convs:  # another CNN set up since: its first conv
        st.session_state.sp_conv = convs[0]
    i = st.session_state.sp_image
    a, b, c, d = st.columns(4)
    layer = a.selectbox("Conv layer", convs, key="sp_conv")
    out = next(x for x in rec.layers if x["name"] == layer)["out"]
    _, h, w, ch = out.shape
    st.session_state.sp_ch = min(st.session_state.sp_ch, ch - 1)
    st.session_state.sp_row = min(st.session_state.sp_row, h - 1)
    st.session_state.sp_col = min(st.session_state.sp_col, w - 1)
    b.number_input(f"Channel (0–{ch - 1})", min_value=0, max_value=ch - 1, step=1, key="sp_ch")
    c.number_input(f"Row (0–{h - 1})", min_value=0, max_value=h - 1, step=1, key="sp_row")
    d.number_input(f"Column (0–{w - 1})", min_value=0, max_value=w - 1, step=1, key="sp_col")
    m = view.conv_map(rec, layer, st.session_state.sp_ch, i)
    rows, cols = np.mgrid[0:h, 0:w]
    top = float(np.abs(m).max()) or 1.0
    fig = go.Figure(go.Scatter(x=cols.ravel(), y=rows.ravel(), mode="markers",
                               marker=dict(symbol="square", size=max(6, 440 // w), color=m.ravel(),
                                           colorscale="RdBu_r", cmin=-top, cmax=top),
                               hovertemplate="row %{y}, column %{x}: %{marker.color:.4f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[st.session_state.sp_col], y=[st.session_state.sp_row], mode="markers",
                             marker=dict(symbol="square-open", size=max(8, 440 // w) + 4, color="black",
                                         line=dict(width=3)), hoverinfo="skip", showlegend=False))
    # square pixels by shrinking the plot area (constrain="domain"), never by widening the ranges:
    # row r, column c then sit at the same place on every screen
    fig.update_xaxes(range=[-0.5, w - 0.5], visible=False, constrain="domain")
    fig.update_yaxes(range=[h - 0.5, -0.5], visible=False, scaleanchor="x", constrain="domain")
    fig.update_layout(showlegend=False, dragmode=False, clickmode="event+select")
    left, right = st.columns([2, 3], gap="large")
    with left:
        st.plotly_chart(common.style(fig, height=500, top=10), theme=None, on_select=_pick_pixel,
                        selection_mode="points", key="sp_map")
        st.caption(f"{layer}, channel {st.session_state.sp_ch}, image {i + 1}: click a pixel to take it apart.")
    e = view.conv_pixel(rec, layer, st.session_state.sp_ch, st.session_state.sp_row, st.session_state.sp_col, i)
    with right:
        st.markdown(e["sentence"])
        n = e["patch"].shape[0]
        many = f" (the first {min(n, 8)} of {n} input channels)" if n > 1 else ""
        st.image(e["pictures"]["patch"], caption=f"the receptive patch of its input{many}")
        st.image(e["pictures"]["kernel"], caption="the kernel")
        st.image(e["pictures"]["products"], caption="patch × kernel: the products that are summed")
        for s in e["steps"]:
            st.markdown(f"- {s}")
        st.markdown(e["backward"])
        st.image(e["pictures"]["kernel_grad"], caption="its share of the kernel's gradient: gradient × patch")
        st.image(e["pictures"]["input_grad"], caption="its share of the input's gradient: gradient × kernel")


if __name__ == "__main__":  # run as a script by Streamlit's pages/ discovery: see ui/__init__.py
    common.run_app()
