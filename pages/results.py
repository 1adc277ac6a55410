"""Results page: compare runs (and the shipped models), then look closely at one: a
diagnosis in plain words, confusion matrix (click a cell to see those test images), how it
learned (an epoch slider over each epoch's held-out confusion matrix, recall per class by
epoch), per-class precision / recall / F1, the most confident mistakes, downloads, and
deleting a run."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from fmnist_core import runs, submit
from fmnist_core.views import results as view, shared
from fmnist_core.data import CLASSES
from fmnist_core.errors import WorkbenchError
from fmnist_core.views.format import plural
from ui import common, identity, nav
from ui import results_robust  # the robustness curve (FGSM / PGD)
from ui.onnx_download import onnx_download

PCT = st.column_config.NumberColumn(format="percent")
NUM = st.column_config.NumberColumn(format="%.4f")


def _test_metrics(src: dict) -> dict | None:
    if src["metrics"]:
        return src["metrics"]
    if src["source"] == "shipped":
        return common.evaluation(src["checkpoint"])
    return None


def page() -> None:
    st.title("Results")
    if identity.current_user().teacher:
        _deleted_runs()
    sources = common.model_list()
    if not sources:
        st.info("Nothing to show yet: no run has been trained and the shipped models are not there. "
                "Launch a run on the Train page.")
        st.page_link(nav.page("train"), label="Train a model", icon=":material/model_training:")
        return
    keys = list(sources)
    me = identity.current_user()
    if "res_sel" not in st.session_state:
        # open on this student's own finished runs (newest first), else on anything finished
        finished = [k for k in keys if sources[k]["status"] == "finished"]
        mine = [k for k in finished if sources[k]["source"] == "run" and me.owns(sources[k])]
        st.session_state.res_sel = (mine or finished or keys)[:2]
    # runs deleted meanwhile (here or in another tab) drop out of the selection
    st.session_state.res_sel = [k for k in st.session_state.res_sel if k in sources]
    st.multiselect("Runs to compare", keys, key="res_sel", format_func=lambda k: sources[k]["label"],
                   placeholder="Choose one or more runs")
    chosen = [common.with_details(sources[k]) for k in st.session_state.res_sel]
    if not chosen:
        st.info("Choose at least one run above.")
        return

    long = shared.curves_long([(s["name"], s["history"]) for s in chosen],
                              {s["name"]: s.get("points") for s in chosen})
    if len(long):
        left, right = st.columns(2)
        left.plotly_chart(common.curves_figure(long, "loss"), theme=None, key="res_loss")
        right.plotly_chart(common.curves_figure(long, "accuracy"), theme=None, key="res_acc")
        st.caption(view.curves_caption(set(long["split"])))
        note = common.loss_note(long)
        if note:
            st.caption(f":material/info: {note}")
    no_hist = [s["name"] for s in chosen if not s["history"]]
    if no_hist:
        st.caption(f"No per-epoch history stored for: {', '.join(no_hist)}.")

    rows = [view.summary_row(s["name"], s["history"], s["status"], s["metrics"], s["model_config"], s["info"])
            for s in chosen]
    table = pd.DataFrame(rows)[view.summary_columns(rows)]
    # the run name stays put and its test accuracy comes right after it: visible without
    # scrolling sideways whatever the width (the long model description is last)
    st.dataframe(table, hide_index=True, width="stretch", placeholder="—", column_config={
        "run": st.column_config.TextColumn(pinned=True, width="medium"),
        "best val acc": PCT, "last train acc": PCT, "last val acc": PCT,
        "test acc": st.column_config.NumberColumn(format="percent", pinned=True),
        "test loss": NUM, "model": st.column_config.TextColumn(width="large")})
    st.caption(("best val acc: the validation accuracy of the epoch whose checkpoint was kept (the best "
                "validation accuracy, or the lowest validation loss for a run that stops on it) · "
                if "best val acc" in table else "No validation split in these runs · ")
               + "last: the final epoch · test: the 10,000 test images, measured once at the end.")

    st.divider()
    detail_keys = st.session_state.res_sel
    if st.session_state.get("res_detail") not in detail_keys:
        st.session_state.res_detail = detail_keys[0]
    st.selectbox("Look closer at", detail_keys, key="res_detail", format_func=lambda k: sources[k]["label"])
    _detail(st.session_state.res_detail, common.with_details(sources[st.session_state.res_detail]))
    results_robust.section(chosen, common.with_details(sources[st.session_state.res_detail]))


def _diagnosis(src: dict, metrics: dict | None) -> None:
    """What a teacher would say about this run (fmnist_core.diagnose), one box per finding."""
    if src["status"] in runs.ACTIVE:
        return
    boxes = {"error": st.error, "warning": st.warning, "info": st.info, "ok": st.success}
    icons = {"error": ":material/error:", "warning": ":material/warning:", "info": ":material/lightbulb:",
             "ok": ":material/check_circle:"}
    for f in view.diagnosis(src, metrics):
        boxes[f.severity](f.text, icon=icons[f.severity])


def _detail(key: str, src: dict) -> None:
    metrics = _test_metrics(src)
    _diagnosis(src, metrics)
    tabs = st.tabs(["Confusion matrix", "Per class", "Mistakes", "How it learned", "Downloads & delete"])
    if metrics is None:
        if src["status"] in runs.ACTIVE:
            msg = (f"Test-set metrics appear when the run has finished (now {src['status']}); "
                   "watch it on the Train page.")
        else:
            why = shared.for_browser(src["info"].get("message", "")) or ""
            if src["status"] == "finished":
                msg = "This run finished, but its test-set metrics are not in the run store."
            else:
                msg = (f"This run stopped (**{src['status']}**) before its test-set evaluation, so it has "
                       "no test metrics" + (f": {why}." if why and why != src["status"] else "."))
        for t in tabs[:3]:
            t.info(msg)
        with tabs[3]:
            _learning(key, src)
    else:
        with tabs[0]:
            _confusion(src, metrics)
        with tabs[1]:
            _per_class(metrics)
        with tabs[2]:
            _mistakes(metrics)
        with tabs[3]:
            _learning(key, src)
    with tabs[4]:
        _downloads(key, src, metrics)


def _learning(key: str, src: dict) -> None:
    """Each epoch's held-out confusion matrix under an epoch slider, and recall per class."""
    split, cms = view.epoch_confusions(src["history"])
    if not cms:
        tc = src.get("train_config") or {}
        if src["history"] and not any(h.get("val_accuracy") is not None for h in src["history"]) \
                and not tc.get("val_fraction", 0.2):
            _learning_without_split(src)
        else:
            st.info("No per-epoch confusion matrices are stored for this model (runs from before they were "
                    "recorded, or a run that stopped before its first epoch ended).")
        return
    if split.startswith("test"):
        st.caption(":material/info: No validation split: this model trained on all 60,000 training images. "
                   "`make models` scored the **test set** at each epoch end for this view only; it chose "
                   "nothing (the model kept is the last epoch's, with settings fixed in advance).")
    epochs = sorted(cms)
    left, right = st.columns([3, 2], gap="medium")
    with left:
        if len(epochs) > 1:
            epoch = st.select_slider("Epoch", epochs, value=epochs[-1], key=f"res_epoch_{key}",
                                     help="Drag to watch the confusions untangle, epoch by epoch")
        else:
            epoch = epochs[0]
            st.caption("One epoch: nothing to slide through.")
        cm = cms[epoch]
        acc = float(np.trace(cm) / max(cm.sum(), 1))
        st.markdown(f"**Epoch {epoch}** · {split} accuracy **{acc:.1%}** on {int(cm.sum()):,} images "
                    "(row-normalised: the diagonal is each class's recall)")
        fig, _ = view.confusion_figure(cm, True)
        st.plotly_chart(common.style(fig, height=560, top=10), theme=None, key="res_epoch_cm",
                        config={"displayModeBar": False})
    with right:
        rec = view.recall_by_epoch(cms)
        fig = px.line(rec, x="epoch", y="recall", color="class", markers=True,
                      color_discrete_sequence=px.colors.qualitative.Dark24)
        fig.update_yaxes(tickformat=".0%", title=f"recall ({split})")
        fig.update_xaxes(dtick=1 if len(epochs) <= 12 else None)
        st.plotly_chart(common.style(fig, height=460, legend_below=True), theme=None, key="res_recall")
        for line in view.learning_story(cms):
            st.markdown(line)


def _learning_without_split(src: dict) -> None:
    """A run with no held-out set scored per epoch (the demo presets train on all 60,000 images): what it
    has, its training epoch by epoch, and the test set once at the end."""
    st.caption(":material/info: This run trained without a validation split (every training image it "
               "used went into training, as the demo presets' 60,000 do), so no held-out set was scored at each "
               "epoch and there is no per-epoch confusion "
               "matrix. What it has: its training, epoch by epoch, below, and the test set once at the "
               "end (the Confusion matrix and Per class tabs). A validation split on the Train page adds "
               "the held-out view.")
    st.dataframe(view.training_by_epoch(src["history"]), hide_index=True, placeholder="—",
                 key="res_train_epochs", column_config={
                     "train accuracy": PCT, "train loss": NUM, "learning rate": st.column_config.NumberColumn(format="%.2e"),
                     "seconds": st.column_config.NumberColumn(format="%.1f")})


def _cm_clicked() -> None:
    """A click on a confusion-matrix cell: point the two class pickers at it."""
    try:
        points = st.session_state["res_cm_chart"]["selection"]["points"]
    except (KeyError, TypeError):
        points = []
    if points:
        st.session_state.res_true = points[0]["y"]
        st.session_state.res_pred = points[0]["x"]


def _confusion(src: dict, metrics: dict) -> None:
    common.init_state({"res_cm_mode": "counts", "res_true": "Shirt", "res_pred": "T-shirt/top"})
    st.radio("Show", ["counts", "row-normalised"], key="res_cm_mode", horizontal=True,
             help="Row-normalised: each row sums to 1, so the diagonal is the recall of that class.")
    norm = st.session_state.res_cm_mode == "row-normalised"
    names = list(CLASSES)
    fig, text = view.confusion_figure(view.confusion(metrics), norm)
    # a transparent marker on every cell carries hover and click: Streamlit reports clicks
    # on scatter points, not on heatmap cells
    xs, ys = np.meshgrid(names, names)
    fig.add_trace(go.Scatter(x=xs.ravel(), y=ys.ravel(), mode="markers", showlegend=False,
                             customdata=np.ravel(text),
                             hovertemplate="true %{y}<br>predicted %{x}<br>%{customdata}<extra></extra>",
                             marker=dict(size=40, color="rgba(0,0,0,0)", symbol="square")))
    # the fixed ranges of confusion_figure: the markers' size would otherwise pad the axes and shift the cells
    left, right = st.columns([3, 2], gap="medium")
    with left:
        st.plotly_chart(common.style(fig, height=580, top=10), theme=None, key="res_cm_chart",
                        on_select=_cm_clicked, selection_mode="points", config={"displayModeBar": False})
        st.caption("Click a cell to see its test images. Diagonal: correct; off the diagonal: "
                   "true class (row) mistaken for the predicted class (column).")
    with right:
        a, b = st.columns(2)
        a.selectbox("True class", names, key="res_true")
        b.selectbox("Predicted class", names, key="res_pred")
        if not src["checkpoint"]:
            st.info("This run has no checkpoint to classify the test images with.")
            return
        t, p = names.index(st.session_state.res_true), names.index(st.session_state.res_pred)
        pred, conf = common.predictions(runs.ensure_checkpoint(src["checkpoint"]))
        y = common.dataset().y_test
        idx = view.cell_indices(y, pred, t, p)
        what = "correctly classified" if t == p else f"predicted **{names[p]}**"
        st.markdown(f"**{len(idx)}** test images of **{names[t]}** {what}.")
        # most confident first: for a mistake, the model's most convinced errors
        idx = idx[np.argsort(-conf[idx], kind="stable")][:20]
        _image_grid([(int(i), f"{conf[i]:.0%}") for i in idx], cols=5)
        st.caption("Most confident first; the percentage is the model's probability for its prediction.")


def _image_grid(items: list[tuple[int, str]], cols: int = 8) -> None:
    x = common.dataset().x_test
    for start in range(0, len(items), cols):
        row = st.columns(cols)
        for col, (i, caption) in zip(row, items[start:start + cols]):
            col.image(shared.upscale(x[i], 3), caption=caption, width="stretch")


def _per_class(metrics: dict) -> None:
    df = view.per_class_frame(metrics)
    left, right = st.columns([1, 1], gap="large")
    left.dataframe(df, hide_index=True, width="stretch", height=420, placeholder="—", column_config={
        "precision": PCT, "recall": PCT, "f1": PCT})
    long = df.melt(id_vars="class", value_vars=["precision", "recall", "f1"], var_name="measure")
    fig = px.bar(long, x="class", y="value", color="measure", barmode="group",
                 color_discrete_sequence=common.COLORS)
    fig.update_yaxes(tickformat=".0%", range=[0, 1.05], title="")
    fig.update_xaxes(title="", tickangle=-35)
    right.plotly_chart(common.style(fig, height=440), theme=None, key="res_per_class")
    st.caption("Precision: of the images called X, the share that are X. Recall: of the X images, "
               "the share found. F1: their harmonic mean.")


def _mistakes(metrics: dict) -> None:
    wrong = metrics.get("misclassified") or []
    if not wrong:
        st.info("No misclassified test images stored for this run.")
        return
    n = st.select_slider("How many", [16, 32, 48, 64], value=32, key="res_n_mistakes")
    total = metrics["n"] - round(metrics["accuracy"] * metrics["n"])
    st.caption(f"The {min(n, len(wrong))} most confident of {plural(total, 'mistake')}: "
               "true class → predicted class (confidence).")
    _image_grid([(m["index"], f"{CLASSES[m['true']]} → {CLASSES[m['pred']]} ({m['confidence']:.0%})")
                 for m in wrong[:n]], cols=8)


def _delete(key: str, run_id: str) -> None:
    try:
        submit.delete_run(identity.current_user(), run_id)  # the owner or the teacher, checked in the core
    except WorkbenchError as exc:
        st.session_state.res_delete_error = str(exc)
        return
    st.session_state.res_delete_error = None
    st.session_state.res_sel = [k for k in st.session_state.res_sel if k != key]
    common.run_list.clear()
    st.toast("Run deleted: the teacher can restore it until the deleted runs are removed for good")


def _bin_action(action: str, run_id: str | None = None) -> None:
    me = identity.current_user()
    try:  # the teacher's alone, checked in the core
        if action == "restore":
            submit.restore_run(me, run_id)
            st.toast("Run restored")
        else:
            n = len(submit.purge_deleted(me))
            st.toast(f"{plural(n, 'deleted run')} removed for good")
        st.session_state.res_bin_error = None
    except WorkbenchError as exc:
        st.session_state.res_bin_error = str(exc)
    common.run_list.clear()


def _deleted_runs() -> None:
    """The teacher's bin: deleted runs can come back until they are removed for good."""
    from fmnist_core import trash
    if common.store_problem():  # said in the sidebar
        return
    try:
        gone = trash.deleted_runs()
    except Exception:  # the bin is a convenience: a store that does not answer is said elsewhere
        return
    if not gone:
        return
    with st.expander(f"Deleted runs ({len(gone)})", icon=":material/restore_from_trash:"):
        st.caption("Deleted runs are hidden from every page, with their files kept. Restore one to "
                   "bring it back; **Remove for good** deletes their records, checkpoints and "
                   "histories from this server (MLflow's `gc`): that cannot be undone.")
        for r in gone[:50]:
            a, b = st.columns([4, 1])
            a.text(f"{shared.run_label(r)} · {r.get('owner') or 'unknown'}")
            b.button("Restore", key=f"res_restore_{r['run_id']}", on_click=_bin_action, args=("restore", r["run_id"]))
        ok = st.checkbox("Yes, remove every deleted run for good", key="res_purge_ok")
        st.button("Remove for good", key="res_purge_btn", type="primary", disabled=not ok,
                  on_click=_bin_action, args=("purge",), icon=":material/delete_forever:")
        if st.session_state.get("res_bin_error"):
            st.error(shared.plain_text(st.session_state.res_bin_error))


def _downloads(key: str, src: dict, metrics: dict | None) -> None:
    stem = src.get("stem") or src["name"].replace(" ", "-")
    cols = st.columns(4)
    if src["checkpoint"]:
        cols[0].download_button("Checkpoint (.pt)", icon=":material/download:",
                                data=lambda p=src["checkpoint"]: Path(p).read_bytes(),  # read on click
                                file_name=f"{stem}.pt", mime="application/octet-stream",
                                key="res_dl_ckpt", on_click="ignore")
    if src["history"]:
        cols[1].download_button("History (CSV)", icon=":material/download:",
                                data=view.history_frame(src["history"]).to_csv(index=False),
                                file_name=f"{stem}-history.csv", mime="text/csv", key="res_dl_hist",
                                on_click="ignore")
    if metrics is not None:
        cm = view.confusion(metrics)
        cols[2].download_button("Confusion matrix (CSV)", icon=":material/download:",
                                data=view.confusion_csv(cm),
                                file_name=f"{stem}-confusion.csv", mime="text/csv", key="res_dl_cm_csv",
                                on_click="ignore")
        cols[3].download_button("Confusion matrix (PNG)", icon=":material/download:",
                                data=lambda: view.confusion_png(cm, title=src["name"]),
                                file_name=f"{stem}-confusion.png", mime="image/png", key="res_dl_cm_png",
                                on_click="ignore")
    if src["checkpoint"]:
        onnx_download(src["checkpoint"], stem)
    if src["source"] != "run":
        st.caption("Shipped models are part of the repository and cannot be deleted here.")
        return
    me = identity.current_user()
    if not (me.teacher or me.owns(src)):
        st.caption(f"This run belongs to {src.get('owner') or 'someone else'}: only they or the "
                   "teacher can delete it.")
        return
    with st.expander("Delete this run", icon=":material/delete:"):
        st.write("Hides the run from every page and list. Its checkpoint, history and metrics stay "
                 "on the server until the teacher removes deleted runs for good, so until then the "
                 "teacher can restore it.")
        ok = st.checkbox("Yes, delete this run", key=f"res_del_ok_{src['run_id']}")
        st.button("Delete run", key="res_del_btn", type="primary", disabled=not ok,
                  on_click=_delete, args=(key, src["run_id"]))
        if st.session_state.get("res_delete_error"):
            st.error(st.session_state.res_delete_error)


if __name__ == "__main__":  # run as a script by Streamlit's pages/ discovery: see ui/__init__.py
    common.run_app()
