"""A class of your own: upload (or take) 10-30 pictures of something new, see each as the
network sees it (28x28), name the class, get an 11-class model in seconds (a head on the
pretrained backbone's cached features), then try it live. What it computes is
fmnist_core/own_class.py's; this page lays it out. Pictures stay in the student's own run."""
from __future__ import annotations

import numpy as np
import streamlit as st

from fmnist_core import backbones, features, own_class
from fmnist_core.errors import WorkbenchError
from ui import common, identity, jobs

FORMATS = ["png", "jpg", "jpeg", "webp", "bmp", "gif"]


@st.cache_resource(show_spinner="Loading the pretrained EfficientNet-Lite0…")
def _backbone():
    return backbones.build(own_class.BACKBONE, own_class.RESOLUTION, own_class.LAYER)


@st.cache_resource(show_spinner=False, max_entries=8)
def _model(path: str, version: float):
    from fmnist_core.models import load_model
    return load_model(path)


@st.cache_data(show_spinner=False, max_entries=256)
def _small(picture: bytes) -> tuple[np.ndarray | None, str | None]:
    """The 28x28 the network sees, or why there is none."""
    from fmnist_core.preprocess import preprocess
    try:
        return preprocess(picture), None
    except WorkbenchError as exc:
        return None, str(exc)


def _features_first() -> None:
    st.info("A class of your own trains on the pretrained EfficientNet-Lite0's features of Fashion-MNIST, "
            "computed once for everyone as a shared job (a few minutes).", icon=":material/hourglass_top:")
    src, params = features.params_for(own_class.BACKBONE, own_class.RESOLUTION, own_class.LAYER)
    if jobs.under_way("features", src, params) or st.button("Compute the features", key="own_features"):
        jobs.ready("features", src, params, "the pretrained features", key="own_feat")


def _pictures() -> list[bytes]:
    files = st.file_uploader(f"{own_class.MIN_PICTURES} to {own_class.MAX_PICTURES} pictures of your class",
                             type=FORMATS, accept_multiple_files=True, key="own_files",
                             help="One item a picture, on a plain background, filling most of the frame.")
    common.init_state({"own_shots": []})
    st.toggle("Use the camera", key="own_cam_on", help="Off until you ask: the browser asks for permission only then.")
    if st.session_state.own_cam_on:
        shot = st.camera_input("Take a picture", key="own_camera")
        a, b = st.columns(2)
        if a.button("Add this shot", key="own_add", disabled=shot is None):
            st.session_state.own_shots = st.session_state.own_shots + [shot.getvalue()]
        if b.button("Clear the shots", key="own_clear"):
            st.session_state.own_shots = []
    return [f.getvalue() for f in files or []] + list(st.session_state.own_shots)


def _show_small(pictures: list[bytes]) -> bool:
    st.caption(f"{len(pictures)} picture{'s' if len(pictures) != 1 else ''}, as the network sees them (28x28):")
    cols, ok = st.columns(10), True
    for i, p in enumerate(pictures):
        small, why = _small(p)
        if small is None:
            cols[i % 10].error(f"{i + 1}: {why}")
            ok = False
        else:
            cols[i % 10].image((small * 255).astype(np.uint8), width=56, caption=str(i + 1))
    return ok


def _train(pictures: list[bytes], user) -> None:
    name = st.text_input("Name of your class", key="own_name", max_chars=30, placeholder="cap, sock, my sneaker…")
    n = len(pictures)
    price = own_class.price(n)
    st.caption(f"Training: about {price['seconds']:.0f} s and {price['mb']:,} MB on this server "
               f"(a linear head, {own_class.EPOCHS} epochs, {own_class.FM_IMAGES:,} Fashion-MNIST images).")
    ready = own_class.MIN_PICTURES <= n <= own_class.MAX_PICTURES
    if st.button("Train the 11-class model", key="own_train", type="primary", disabled=not ready,
                 icon=":material/model_training:"):
        with st.spinner("Training the 11-class model…"):
            try:
                result = own_class.train_own(pictures, name, net=_backbone(), data=common.dataset())
                st.session_state.own_pick = own_class.save_run(result, user)  # show the new one
            except WorkbenchError as exc:
                st.error(str(exc))


def _result(run: dict, user) -> None:
    from fmnist_core import runs
    try:
        own_class.open_run(run, user)  # the owner's (or the teacher's) only
        path = runs.checkpoint_path(run)
        model = _model(path, common.mtime(path))
        from fmnist_core.models import read_checkpoint
        ckpt = read_checkpoint(path)
        more = own_class.details(run, user)
    except WorkbenchError as exc:
        st.error(str(exc))
        return
    m, classes = ckpt["metrics"], list(ckpt["classes"])
    name = classes[-1]
    a, b, c, d = st.columns(4)
    a.metric(f"held-out “{name}” pictures right", f"{m['own_accuracy']:.0%}",
             help=f"{len(m['held_out'])} pictures the model never trained on")
    b.metric("ten classes, with yours", f"{m['ten_accuracy_with']:.1%}", help=f"{m['test_images']:,} test images")
    c.metric("ten classes, without it", f"{m['ten_accuracy_without']:.1%}",
             help="the same head trained on Fashion-MNIST alone")
    d.metric("seconds", f"{m['seconds']:.1f}")
    st.caption("Held-out pictures were called: " + ", ".join(m["held_predicted"]))
    _matrix(more, classes)
    _map(more, classes[-1])
    st.subheader("Try it")
    f = st.file_uploader("A picture to classify", type=FORMATS, key="own_try")
    if f is None:
        return
    small, why = _small(f.getvalue())
    if small is None:
        st.error(why)
        return
    p = own_class.probabilities(model, small)
    left, right = st.columns([1, 4])
    left.image((small * 255).astype(np.uint8), width=112, caption="28x28")
    top = int(p.argmax())
    right.markdown(f"**Answer: {classes[top]}** ({p[top]:.0%})")
    right.bar_chart({"probability": {c_: float(v) for c_, v in zip(classes, p)}}, horizontal=True, height=300)


def _matrix(more: dict, classes: list[str]) -> None:
    """The 11x11 confusion matrix, drawn as Results draws its ten-class one."""
    if "confusion_matrix" not in more:
        st.caption("This class was trained before its confusion matrix was stored: train it again to see it.")
        return
    from fmnist_core.views.results import confusion_figure
    cm = np.asarray(more["confusion_matrix"])
    st.subheader("Confusion matrix")
    fig, _ = confusion_figure(cm, False, names=classes)
    st.plotly_chart(common.style(fig, height=600, top=10), theme=None, key="own_cm",
                    config={"displayModeBar": False})
    st.caption(f"Rows: true class; columns: what the model answered. Rows 1-10: {int(cm[:10].sum()):,} "
               f"Fashion-MNIST test images; the last row: your {int(cm[10].sum())} held-out “{classes[-1]}” "
               f"pictures. The last column: what was taken for “{classes[-1]}”.")


def _map(more: dict, name: str) -> None:
    """Fashion-MNIST's pooled features in 2-D (PCA), coloured as the Map page colours them, and
    the student's pictures placed on it as stars."""
    if "map" not in more:
        return
    from fmnist_core.views import map as map_view
    m = more["map"]
    st.subheader("Where your pictures land")
    fig = map_view.figure(np.asarray(m["xy"]), np.asarray(m["labels"]), common.COLORS,
                          stars=map_view.picture_stars(m["stars"], m["held_out"], name))
    st.plotly_chart(common.style(fig, height=560, top=30), theme=None, key="own_map")
    st.caption(f"PCA of the backbone's pooled features (1,280 values a picture) of {len(m['labels']):,} "
               f"Fashion-MNIST test images, one colour a class; the two axes hold {sum(m['explained']):.0%} "
               f"of their variance. ★ your {len(m['stars'])} pictures, projected onto the same two axes: "
               "pictures the backbone finds alike land close together.")


def page() -> None:
    st.title("A class of your own")
    st.caption("Teach the network something new from a few pictures: a head on a pretrained backbone's "
               "features learns it in seconds. Your pictures stay in your own run; nobody else sees them.")
    if own_class.cached_features() is None:
        _features_first()
        return
    user = identity.current_user()
    pictures = _pictures()
    if pictures and _show_small(pictures):
        _train(pictures, user)
    mine = own_class.my_runs(user)
    if not mine:
        return
    st.divider()
    labels = {r["run_id"]: f"{r['label'].removeprefix('class of your own: ')} ({r['owner']})" for r in mine}
    ids = list(labels)
    if st.session_state.get("own_pick") not in ids:
        st.session_state.pop("own_pick", None)
    run_id = st.selectbox("Your classes", ids, format_func=labels.get, key="own_pick")
    run = next(r for r in mine if r["run_id"] == run_id)
    _result(run, user)
    if st.button("Delete this class and its pictures", key="own_delete", icon=":material/delete:"):
        from fmnist_core.submit import delete_run
        try:
            delete_run(user, run_id)
            st.session_state.pop("own_pick", None)
            st.rerun()
        except WorkbenchError as exc:
            st.error(str(exc))


if __name__ == "__main__":  # run as a script by Streamlit's pages/ discovery (ui/__init__.py)
    common.run_app()
