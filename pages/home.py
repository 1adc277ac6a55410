"""Home / Data page: the dataset (where it came from, examples, balance, mean images),
the shipped models' accuracy and the devices this server can compute on."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

from fmnist_core.views import home as view, shared
from fmnist_core.data import CLASSES, IMAGE_SIZE, summary
from fmnist_core.views.format import plural
from ui import common, nav


def page() -> None:
    common.init_state({"home_seed": 0})
    ds = common.dataset()
    s = summary(ds)

    st.title("Fashion-MNIST Workbench")
    st.markdown("Train small neural networks on **Fashion-MNIST** — 70,000 grayscale photos of "
                "clothing in 10 classes (Zalando Research, 2017) — watch them learn, and read their "
                "mistakes.")
    _start_here()
    c = st.columns(4)
    c[0].metric("Training images", f"{s['train']:,}")
    c[1].metric("Test images", f"{s['test']:,}")
    c[2].metric("Classes", len(CLASSES))
    c[3].metric("Image size", f"{IMAGE_SIZE}×{IMAGE_SIZE} px")
    st.caption(f"Read {shared.data_origin(s['source'])}; every file was checked (magic number, "
               "shape, labels, length) before use.")

    st.subheader("The ten classes")
    head = st.columns([4, 1])
    head[0].caption("Ten random training images per class, shown at 3× with their real pixels.")
    if head[1].button("Other examples", icon=":material/shuffle:", key="home_shuffle"):
        st.session_state.home_seed += 1
    rows = common.class_rows_png(st.session_state.home_seed)
    for k, name in enumerate(CLASSES):
        left, right = st.columns([1, 6], vertical_alignment="center")
        left.markdown(f"**{name}**")
        right.image(rows[k])

    bal, mean = st.columns([1, 1], gap="large")
    with bal:
        st.subheader("Class balance")
        df = view.class_balance(ds).melt(id_vars="class", var_name="split", value_name="images")
        fig = px.bar(df, y="class", x="images", color="split", barmode="group", orientation="h",
                     color_discrete_sequence=common.COLORS)
        fig.update_yaxes(title="", autorange="reversed")
        fig.update_xaxes(title="images", tickformat=",")
        st.plotly_chart(common.style(fig, height=460), theme=None, key="home_balance")
        st.caption("Exactly balanced: 6,000 training and 1,000 test images per class, so plain "
                   "accuracy is a fair summary.")
    with mean:
        st.subheader("Mean image per class")
        means = common.mean_images_png()
        for start in (0, 5):
            for col, k in zip(st.columns(5), range(start, start + 5)):
                col.image(means[k], caption=CLASSES[k], width="stretch")
        st.caption("The average of all 6,000 training images of each class. Shirt, T-shirt/top, "
                   "Pullover and Coat have near-identical averages: that is where models make most "
                   "of their mistakes.")

    st.subheader("Shipped models")
    shipped = common.shipped_models()
    rows = [{"model": shared.SHIPPED_TITLES.get(m["name"], m["name"]), "preset": m["metrics"].get("preset"),
             "architecture": shared.describe_model(m["model_config"]),
             "parameters": m.get("parameters"), "test accuracy": m["metrics"].get("test_accuracy"),
             "epochs": m["metrics"].get("epochs_run"), "trained": m["metrics"].get("trained"),
             "on": m["metrics"].get("device")} for m in shipped if m["available"]]
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", placeholder="—", column_config={
            "test accuracy": st.column_config.NumberColumn(format="percent"),
            "parameters": st.column_config.NumberColumn(format="localized")})
    for m in shipped:
        if not m["available"]:
            st.info(f"**{m['name']}**: " + (shared.for_browser(m["error"]) or f"not yet trained — `make models` writes "
                                                         f"{Path(m['path']).name}."))

    st.subheader("Devices")
    info = common.machine()
    lines = [f"- **cpu**: {info['cpu']} ({plural(info['cores'], 'core')}, PyTorch uses "
             f"{plural(info['torch_threads'], 'thread')})"]
    for name, why in common.devices().items():
        if name == "cpu":
            continue
        if why is not None:
            lines.append(f"- **{name}**: not available — {why}")
        else:
            gpu = f" ({info['gpu']})" if name == "cuda" and info.get("gpu") else ""
            lines.append(f"- **{name}**: available{gpu}")
    st.markdown("\n".join(lines))



def _start_here() -> None:
    """A first visitor's next step: three pages, in the order a first lesson takes them."""
    with st.container(border=True):
        st.markdown("##### :material/flag: Start here")
        steps = st.columns(3, gap="large")
        with steps[0]:
            st.markdown("**1 · Train the demo CNN**")
            st.caption(f"Train opens on {view.demo_words()} and shows its "
                       "price on this server before you launch; the course project's MLP is *mlp-seed000* "
                       "in the same list. In a class, type your name in the sidebar first; then press "
                       "**Launch training**.")
            st.page_link(nav.page("train"), label="Train", icon=":material/model_training:")
        with steps[1]:
            st.markdown("**2 · Watch it learn**")
            st.caption("Right after Launch the live view shows the curves as it trains: the loss falls, "
                       "the accuracy climbs past 90% in the first epochs and ends near 93% (the MLP: "
                       "about 88%). Then Results shows what it confuses.")
            st.page_link(nav.page("results"), label="Results", icon=":material/analytics:")
        with steps[2]:
            st.markdown("**3 · Draw a garment**")
            st.caption("Draw a T-shirt, trousers or a shoe as a solid shape and see what a trained model "
                       "makes of it, step by step down to its 28×28 input.")
            st.page_link(nav.page("predict"), label="Predict", icon=":material/online_prediction:")


if __name__ == "__main__":  # run as a script by Streamlit's pages/ discovery: see ui/__init__.py
    common.run_app()
